/**
 * Just enough of nginx's configuration language to check the gateway's
 * routing offline: directives and blocks, quoting, comments, `include`, and
 * the location selection algorithm (exact, then longest prefix, `^~`, then
 * regular expressions in file order).
 */
export interface Directive {
  name: string;
  args: string[];
  block?: Directive[];
  line: number;
}

interface Token {
  text: string;
  quoted: boolean;
  line: number;
}

export class NginxSyntaxError extends Error {}

function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  let line = 1;
  let index = 0;
  while (index < text.length) {
    const char = text[index];
    if (char === '\n') {
      line += 1;
      index += 1;
    } else if (/\s/.test(char)) {
      index += 1;
    } else if (char === '#') {
      while (index < text.length && text[index] !== '\n') index += 1;
    } else if (char === '{' || char === '}' || char === ';') {
      tokens.push({ text: char, quoted: false, line });
      index += 1;
    } else if (char === '"' || char === "'") {
      const start = line;
      let value = '';
      index += 1;
      while (index < text.length && text[index] !== char) {
        if (text[index] === '\\' && index + 1 < text.length) {
          value += text[index + 1];
          index += 2;
          continue;
        }
        if (text[index] === '\n') line += 1;
        value += text[index];
        index += 1;
      }
      if (index >= text.length) throw new NginxSyntaxError(`unterminated ${char} quote opened on line ${start}`);
      index += 1;
      tokens.push({ text: value, quoted: true, line: start });
    } else {
      let value = '';
      while (index < text.length && !/[\s;{}]/.test(text[index]) && !(text[index] === '#' && value === '')) {
        value += text[index];
        index += 1;
      }
      tokens.push({ text: value, quoted: false, line });
    }
  }
  return tokens;
}

export interface ParseOptions {
  /** Text of a file named by an `include` directive; its directives replace the include. */
  include?(path: string): string;
}

export function parseNginx(text: string, options: ParseOptions = {}): Directive[] {
  const tokens = tokenize(text);
  let position = 0;

  function parseBlock(closing: boolean): Directive[] {
    const directives: Directive[] = [];
    while (position < tokens.length) {
      const token = tokens[position];
      if (!token.quoted && token.text === '}') {
        if (!closing) throw new NginxSyntaxError(`unexpected "}" on line ${token.line}`);
        position += 1;
        return directives;
      }
      if (!token.quoted && (token.text === '{' || token.text === ';')) throw new NginxSyntaxError(`unexpected "${token.text}" on line ${token.line}`);
      const name = token.text;
      const args: string[] = [];
      position += 1;
      for (;;) {
        const next = tokens[position];
        if (!next) throw new NginxSyntaxError(`directive "${name}" on line ${token.line} is not terminated`);
        position += 1;
        if (!next.quoted && next.text === ';') {
          if (name === 'include' && options.include) directives.push(...parseNginx(options.include(args[0]), options));
          else directives.push({ name, args, line: token.line });
          break;
        }
        if (!next.quoted && next.text === '{') {
          directives.push({ name, args, block: parseBlock(true), line: token.line });
          break;
        }
        if (!next.quoted && next.text === '}') throw new NginxSyntaxError(`unexpected "}" on line ${next.line}`);
        args.push(next.text);
      }
    }
    if (closing) throw new NginxSyntaxError('a block is not closed');
    return directives;
  }

  return parseBlock(false);
}

export function children(block: Directive[] | undefined, name: string): Directive[] {
  return (block ?? []).filter((directive) => directive.name === name);
}

export function child(block: Directive[] | undefined, name: string): Directive | undefined {
  return children(block, name)[0];
}

/** The `http { server { listen <port> } }` block. */
export function serverListeningOn(config: Directive[], port: number): Directive | undefined {
  const http = child(config, 'http');
  return children(http?.block, 'server').find((server) => children(server.block, 'listen').some((listen) => listen.args[0] === String(port) || listen.args[0]?.endsWith(`:${port}`)));
}

export interface Location {
  modifier: '' | '=' | '^~' | '~' | '~*';
  pattern: string;
  directive: Directive;
}

export function locations(server: Directive): Location[] {
  return children(server.block, 'location')
    .filter((directive) => !directive.args[0]?.startsWith('@'))
    .map((directive) => {
      const [first, second] = directive.args;
      if (second === undefined) return { modifier: '' as const, pattern: first, directive };
      if (first !== '=' && first !== '^~' && first !== '~' && first !== '~*') throw new NginxSyntaxError(`unknown location modifier "${first}" on line ${directive.line}`);
      return { modifier: first, pattern: second, directive };
    });
}

/** nginx's choice of location for a (normalized) request path. */
export function selectLocation(server: Directive, path: string): { location: Location; captures: Record<string, string> } | undefined {
  const all = locations(server);
  const exact = all.find((location) => location.modifier === '=' && location.pattern === path);
  if (exact) return { location: exact, captures: {} };
  let prefix: Location | undefined;
  for (const location of all) {
    if ((location.modifier === '' || location.modifier === '^~') && path.startsWith(location.pattern)) {
      if (!prefix || location.pattern.length > prefix.pattern.length) prefix = location;
    }
  }
  if (prefix?.modifier === '^~') return { location: prefix, captures: {} };
  for (const location of all) {
    if (location.modifier !== '~' && location.modifier !== '~*') continue;
    const match = new RegExp(location.pattern, location.modifier === '~*' ? 'i' : '').exec(path);
    if (match) return { location, captures: { ...match.groups } };
  }
  return prefix ? { location: prefix, captures: {} } : undefined;
}

export type Action = { proxyPass: string } | { status: number; body: string };

/** What a location does: the proxy target (variables substituted) or the literal answer. */
export function actionOf(location: Location, captures: Record<string, string>): Action | undefined {
  const block = location.directive.block;
  const returned = child(block, 'return');
  if (returned) return { status: Number(returned.args[0]), body: returned.args[1] ?? '' };
  const proxy = child(block, 'proxy_pass');
  if (!proxy) return undefined;
  return { proxyPass: proxy.args[0].replace(/\$([a-z_]+)/g, (whole, name: string) => captures[name] ?? whole) };
}

/** `proxy_pass http://name` -> the `server` addresses of `upstream name`, else the literal host:port. */
export function proxyTargets(config: Directive[], proxyPass: string): string[] {
  const match = /^https?:\/\/([^/]+)/.exec(proxyPass);
  if (!match) return [];
  const upstream = children(child(config, 'http')?.block, 'upstream').find((directive) => directive.args[0] === match[1]);
  if (!upstream) return [match[1]];
  return children(upstream.block, 'server').map((server) => server.args[0]);
}
