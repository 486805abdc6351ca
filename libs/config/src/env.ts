/**
 * One reader for process environment values. Apps describe the variables they
 * need with these readers and parse them once at start-up; nothing else in the
 * code base touches `process.env`.
 */
export class ConfigError extends Error {
  constructor(readonly variable: string, reason: string) {
    super(`invalid configuration: ${variable} ${reason}`);
    this.name = 'ConfigError';
  }
}

export type Env = Record<string, string | undefined>;

/**
 * A URL (or URL-like text) fit for a log line or an error message: the userinfo
 * part (`redis://user:password@host`) is replaced, so a Redis password never
 * reaches stderr, a log collector or a terminal scrollback. Works on text that
 * does not parse as a URL too, since a malformed value is exactly what an error
 * message would otherwise echo.
 */
export function redactUrl(text: string): string {
  // Up to the last '@': a password may itself hold '@' or '/'. Over-redacting a
  // URL with '@' in its path or query is the safe way to be wrong.
  const at = text.lastIndexOf('@');
  if (at < 0) return text;
  const scheme = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//.exec(text)?.[0] ?? '';
  return `${scheme}***${text.slice(at)}`;
}

export class EnvReader {
  constructor(private readonly env: Env = process.env) {}

  raw(name: string): string | undefined {
    const value = this.env[name];
    return value === undefined || value.trim() === '' ? undefined : value.trim();
  }

  string(name: string, fallback?: string): string {
    const value = this.raw(name) ?? fallback;
    if (value === undefined) throw new ConfigError(name, 'is required');
    return value;
  }

  optionalString(name: string): string | undefined {
    return this.raw(name);
  }

  int(name: string, fallback: number, bounds: { min?: number; max?: number } = {}): number {
    const text = this.raw(name);
    if (text === undefined) return fallback;
    if (!/^-?\d+$/.test(text)) throw new ConfigError(name, `must be an integer, got "${text}"`);
    const value = Number(text);
    if (bounds.min !== undefined && value < bounds.min) throw new ConfigError(name, `must be >= ${bounds.min}, got ${value}`);
    if (bounds.max !== undefined && value > bounds.max) throw new ConfigError(name, `must be <= ${bounds.max}, got ${value}`);
    return value;
  }

  port(name: string, fallback: number): number {
    return this.int(name, fallback, { min: 0, max: 65535 });
  }

  bool(name: string, fallback: boolean): boolean {
    const text = this.raw(name);
    if (text === undefined) return fallback;
    if (/^(1|true|yes|on)$/i.test(text)) return true;
    if (/^(0|false|no|off)$/i.test(text)) return false;
    throw new ConfigError(name, `must be true or false, got "${text}"`);
  }

  /** Comma-separated list; empty entries are dropped. */
  list(name: string, fallback: string[] = []): string[] {
    const text = this.raw(name);
    if (text === undefined) return fallback;
    return text.split(',').map((item) => item.trim()).filter((item) => item.length > 0);
  }

  url(name: string, fallback: string, protocols: string[]): string {
    const text = this.raw(name) ?? fallback;
    let parsed: URL;
    try {
      parsed = new URL(text);
    } catch {
      throw new ConfigError(name, `must be a URL, got "${redactUrl(text)}"`);
    }
    if (!protocols.includes(parsed.protocol)) {
      throw new ConfigError(name, `must use ${protocols.join(' or ')}, got "${parsed.protocol}"`);
    }
    return text.replace(/\/+$/, '');
  }

  oneOf<T extends string>(name: string, fallback: T, allowed: readonly T[]): T {
    const text = this.raw(name) ?? fallback;
    if (!allowed.includes(text as T)) throw new ConfigError(name, `must be one of ${allowed.join(', ')}, got "${text}"`);
    return text as T;
  }
}
