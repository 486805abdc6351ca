import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type Redis from 'ioredis';

export const LUA_DIR = join(__dirname, 'lua');

export interface LuaScript {
  /** Command name, e.g. `allocateCall`. */
  name: string;
  numberOfKeys: number;
  source: string;
}

const FILE_NAME = /^([a-z][A-Za-z]+)-(\d+)\.lua$/;
const INCLUDE = /^--- @include "([a-z-]+)"$/gm;

/** Reads every `<verbNoun>-<keys>.lua` file and inlines its includes. */
export function readScripts(dir: string = LUA_DIR): LuaScript[] {
  return readdirSync(dir)
    .filter((file) => FILE_NAME.test(file))
    .sort()
    .map((file) => {
      const [, name, keys] = FILE_NAME.exec(file)!;
      const text = readFileSync(join(dir, file), 'utf8');
      // Includes may include others (pod-state includes wait-queue); a few rounds suffice.
      let source = text;
      for (let round = 0; round < 5 && INCLUDE.test(source); round += 1) {
        INCLUDE.lastIndex = 0;
        source = source.replace(INCLUDE, (_line, include: string) =>
          readFileSync(join(dir, 'includes', `${include}.lua`), 'utf8'),
        );
      }
      INCLUDE.lastIndex = 0;
      return { name, numberOfKeys: Number(keys), source };
    });
}

/**
 * Registers every script on a connection with `defineCommand`: ioredis sends
 * EVALSHA and falls back to EVAL on NOSCRIPT, so a restarted or flushed Redis
 * (empty script cache) needs nothing from us.
 */
export function defineScripts(redis: Redis, scripts: LuaScript[] = readScripts()): void {
  for (const script of scripts) {
    // A name ioredis already uses (e.g. `ping`) would silently shadow the script.
    if (typeof (redis as unknown as Record<string, unknown>)[script.name] === 'function' && !(redis as unknown as { scriptsSet?: Record<string, unknown> }).scriptsSet?.[script.name]) {
      throw new Error(`Lua script ${script.name} clashes with an ioredis method; rename the file`);
    }
    if ((redis as unknown as { scriptsSet?: Record<string, unknown> }).scriptsSet?.[script.name]) continue;
    redis.defineCommand(script.name, { numberOfKeys: script.numberOfKeys, lua: script.source });
  }
}
