import { Controller, Get, Param, Res } from '@nestjs/common';
import type { FastifyReply } from 'fastify';
import { readFileSync, readdirSync } from 'node:fs';
import { extname, join } from 'node:path';
import { ApiError } from '@smart-router/http';

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.svg': 'image/svg+xml',
};

/** The static assets beside this file (copied into dist/ by the build and so into the admin image). */
export const DASHBOARD_DIR = join(__dirname, 'dashboard');

function loadAssets(): Map<string, { type: string; body: Buffer }> {
  const assets = new Map<string, { type: string; body: Buffer }>();
  for (const name of readdirSync(DASHBOARD_DIR)) {
    const type = CONTENT_TYPES[extname(name)];
    if (type) assets.set(name, { type, body: readFileSync(join(DASHBOARD_DIR, name)) });
  }
  if (!assets.has('index.html')) throw new Error(`dashboard assets missing in ${DASHBOARD_DIR}`);
  return assets;
}

/**
 * The SRE dashboard (SPEC section 9.4): plain HTML/CSS/JS read once at start,
 * no CDN, works offline. The page holds no data: it calls the admin API with
 * the token the user enters, so serving it needs no token.
 */
@Controller('dashboard')
export class DashboardController {
  private readonly assets = loadAssets();

  @Get()
  root(@Res() reply: FastifyReply) {
    // Relative asset URLs resolve under /dashboard/ only with the trailing slash.
    return reply.status(308).header('location', '/dashboard/').send();
  }

  /** `/dashboard/` (the page) and `/dashboard/<asset>`. */
  @Get('*')
  file(@Param('*') path: string | string[] | undefined, @Res() reply: FastifyReply) {
    const name = (Array.isArray(path) ? path.join('/') : path) || 'index.html';
    return this.send(reply, name);
  }

  private send(reply: FastifyReply, name: string) {
    const asset = this.assets.get(name);
    if (!asset) throw ApiError.notFound('no such dashboard asset', 'NOT_FOUND');
    return reply
      .header('content-type', asset.type)
      .header('cache-control', 'no-cache')
      .header('content-security-policy', "default-src 'self'; style-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
      .header('x-content-type-options', 'nosniff')
      .send(asset.body);
  }
}
