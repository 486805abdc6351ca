/** What a JSON route answered: its status and its parsed body. */
export interface JsonAnswer<T = Record<string, any>> { // eslint-disable-line @typescript-eslint/no-explicit-any
  status: number;
  body: T;
}

/**
 * One JSON request to a running app (`base` is its URL): the body, if any, is
 * sent as application/json, and the answer's body is parsed as JSON (every
 * route of ours answers JSON, errors included).
 */
export async function jsonRequest<T = Record<string, any>>(base: string, method: string, path: string, body?: unknown): Promise<JsonAnswer<T>> { // eslint-disable-line @typescript-eslint/no-explicit-any
  const response = await fetch(`${base}${path}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: response.status, body: (await response.json()) as T };
}
