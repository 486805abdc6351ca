import { NginxSyntaxError, actionOf, child, parseNginx, proxyTargets, selectLocation, serverListeningOn } from './nginx-config';

const CONFIG = `
http {
  upstream app { server app:8080; server app-2:8080; }
  server {
    listen 8000; # public
    location = /exact { return 200 'exact'; }
    location /files/ { return 200 "prefix \\"quoted\\""; }
    location ^~ /static/ { return 200 'stop'; }
    location ~ ^/static/(?<name>[a-z]+)$ { return 200 'regex-after-stop'; }
    location ~ ^/files/(?<name>[a-z]+)$ { proxy_pass http://$name.internal:9000; }
    location ~* ^/CASE/ { return 200 'case-insensitive'; }
    location ~ "^/braces/[a-z]{2}$" { include extra.conf; proxy_pass http://app; }
    location / { return 404 'fallback'; }
    location @named { return 502 'named'; }
  }
}
`;

function parsed() {
  return parseNginx(CONFIG, { include: (path) => (path === 'extra.conf' ? 'allow 10.0.0.0/8; deny all;' : '') });
}

function decide(path: string) {
  const server = serverListeningOn(parsed(), 8000);
  if (!server) throw new Error('no server on 8000');
  const selected = selectLocation(server, path);
  return selected && actionOf(selected.location, selected.captures);
}

describe('nginx configuration reader', () => {
  it('parses blocks, quotes, comments and includes', () => {
    const config = parsed();
    const server = serverListeningOn(config, 8000);
    expect(server).toBeDefined();
    expect(serverListeningOn(config, 9000)).toBeUndefined();
    const braces = server?.block?.find((directive) => directive.args.includes('^/braces/[a-z]{2}$'));
    expect(braces?.block?.map((directive) => `${directive.name} ${directive.args.join(' ')}`)).toEqual(['allow 10.0.0.0/8', 'deny all', 'proxy_pass http://app']);
    expect(proxyTargets(config, 'http://app')).toEqual(['app:8080', 'app-2:8080']);
    expect(proxyTargets(config, 'http://pod-1.internal:9000')).toEqual(['pod-1.internal:9000']);
    expect(child(config, 'events')).toBeUndefined();
  });

  it('selects locations the way nginx does', () => {
    expect(decide('/exact')).toEqual({ status: 200, body: 'exact' });
    // A regex beats a plain prefix, in file order...
    expect(decide('/files/abc')).toEqual({ proxyPass: 'http://abc.internal:9000' });
    // ...and the longest plain prefix is used when no regex matches.
    expect(decide('/files/ABC')).toEqual({ status: 200, body: 'prefix "quoted"' });
    // `^~` stops the regex search.
    expect(decide('/static/abc')).toEqual({ status: 200, body: 'stop' });
    expect(decide('/case/x')).toEqual({ status: 200, body: 'case-insensitive' });
    expect(decide('/braces/ab')).toEqual({ proxyPass: 'http://app' });
    expect(decide('/braces/abc')).toEqual({ status: 404, body: 'fallback' });
    expect(decide('/exact/')).toEqual({ status: 404, body: 'fallback' });
  });

  it('rejects broken syntax', () => {
    expect(() => parseNginx('http { server { listen 80; }')).toThrow(NginxSyntaxError);
    expect(() => parseNginx("location / { return 200 'open; }")).toThrow(/unterminated/);
    expect(() => parseNginx('listen 80')).toThrow(/not terminated/);
    expect(() => parseNginx('}')).toThrow(/unexpected/);
  });
});
