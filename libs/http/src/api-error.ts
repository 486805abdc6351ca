import { HttpStatus } from '@nestjs/common';

/**
 * A domain answer with an HTTP status: `{"error": message, "code": CODE}`.
 * Thrown by services; the exception filter writes it.
 */
export class ApiError extends Error {
  /** Why, for the log line only (never sent to the client): one line, no secrets. */
  logDetail?: string;

  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
    this.name = 'ApiError';
  }

  static badRequest(message: string, code = 'INVALID_REQUEST'): ApiError {
    return new ApiError(HttpStatus.BAD_REQUEST, code, message);
  }
  static notFound(message: string, code = 'NOT_FOUND'): ApiError {
    return new ApiError(HttpStatus.NOT_FOUND, code, message);
  }
  static unavailable(message: string, code: string): ApiError {
    return new ApiError(HttpStatus.SERVICE_UNAVAILABLE, code, message);
  }
  static unauthorized(): ApiError {
    return new ApiError(HttpStatus.UNAUTHORIZED, 'UNAUTHORIZED', 'missing or invalid bearer token');
  }
  static forbidden(message = 'forbidden'): ApiError {
    return new ApiError(HttpStatus.FORBIDDEN, 'FORBIDDEN', message);
  }
}

/** Redis could not answer: the request fails closed, never reads as "false". */
export class RedisUnavailableError extends ApiError {
  constructor(override readonly cause: unknown) {
    super(HttpStatus.SERVICE_UNAVAILABLE, 'REDIS_UNAVAILABLE', 'state store unavailable, retry shortly');
  }
}
