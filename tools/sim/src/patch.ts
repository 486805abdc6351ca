/** The three PATCH flavours kubectl and client-node send, for plain JSON objects. */
type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** RFC 7386 merge patch (strategic merge patch is the same for the fields we keep). */
export function mergePatch(target: Json, patch: Json): Json {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return patch;
  const result: { [key: string]: Json } = target && typeof target === 'object' && !Array.isArray(target) ? { ...target } : {};
  for (const [key, value] of Object.entries(patch)) {
    if (key === '$patch' || key.startsWith('$setElementOrder')) continue;
    if (value === null) delete result[key];
    else result[key] = mergePatch(result[key] ?? null, value);
  }
  return result;
}

export interface JsonPatchOperation {
  op: 'add' | 'replace' | 'remove' | 'test';
  path: string;
  value?: Json;
}

/** RFC 6902 JSON patch: add/replace/remove/test on object members and array indexes. */
export function jsonPatch(target: Json, operations: JsonPatchOperation[]): Json {
  const document = structuredClone(target);
  for (const operation of operations) {
    const segments = operation.path.split('/').slice(1).map((segment) => segment.replace(/~1/g, '/').replace(/~0/g, '~'));
    const last = segments.pop();
    if (last === undefined) throw new PatchError(`invalid path ${operation.path}`);
    let parent = document as { [key: string]: Json } | Json[];
    for (const segment of segments) {
      let next = (parent as { [key: string]: Json })[segment];
      if (next === undefined || next === null) {
        if (operation.op !== 'add') throw new PatchError(`path ${operation.path} does not exist`);
        next = {};
        (parent as { [key: string]: Json })[segment] = next;
      }
      if (typeof next !== 'object') throw new PatchError(`path ${operation.path} does not exist`);
      parent = next as { [key: string]: Json };
    }
    const container = parent as { [key: string]: Json };
    switch (operation.op) {
      case 'add':
        if (Array.isArray(parent)) parent.splice(last === '-' ? parent.length : Number(last), 0, operation.value ?? null);
        else container[last] = operation.value ?? null;
        break;
      case 'replace':
        if (!(last in container)) throw new PatchError(`path ${operation.path} does not exist`);
        container[last] = operation.value ?? null;
        break;
      case 'remove':
        if (!(last in container)) throw new PatchError(`path ${operation.path} does not exist`);
        if (Array.isArray(parent)) parent.splice(Number(last), 1);
        else delete container[last];
        break;
      case 'test':
        if (JSON.stringify(container[last]) !== JSON.stringify(operation.value)) throw new PatchError(`test failed at ${operation.path}`);
        break;
      default:
        throw new PatchError(`unsupported op ${(operation as { op: string }).op}`);
    }
  }
  return document;
}

export class PatchError extends Error {}

export function applyPatch(contentType: string, target: object, body: unknown): object {
  if (contentType.startsWith('application/json-patch+json')) {
    if (!Array.isArray(body)) throw new PatchError('a JSON patch must be an array of operations');
    return jsonPatch(target as Json, body as JsonPatchOperation[]) as object;
  }
  if (contentType.startsWith('application/merge-patch+json') || contentType.startsWith('application/strategic-merge-patch+json')) {
    return mergePatch(target as Json, body as Json) as object;
  }
  throw new PatchError(`unsupported patch content type ${contentType}`);
}
