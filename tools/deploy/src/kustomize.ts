import { existsSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { ROOT } from './repository';

/** A Kubernetes object as parsed from YAML; checks narrow it field by field. */
export interface Manifest {
  apiVersion?: unknown;
  kind?: unknown;
  metadata?: { name?: unknown; namespace?: unknown; labels?: Record<string, unknown> };
  [field: string]: unknown;
}

export interface LoadedManifest {
  /** Repository-relative path of the file it came from. */
  file: string;
  manifest: Manifest;
}

export interface ConfigMapGenerator {
  name: string;
  /** key -> repository-relative file */
  files: Map<string, string>;
}

export interface LoadedKustomization {
  dir: string;
  namespace?: string;
  resources: LoadedManifest[];
  generators: ConfigMapGenerator[];
  patches: LoadedManifest[];
  images: { name: string; newName?: string; newTag?: string }[];
  /** Every problem found while loading: missing files, YAML errors, unknown fields. */
  problems: string[];
}

const KNOWN_FIELDS = new Set(['apiVersion', 'kind', 'namespace', 'resources', 'configMapGenerator', 'patches', 'images', 'generatorOptions']);

export function loadYamlFile(path: string): { documents: unknown[]; problems: string[] } {
  const text = readFileSync(path, 'utf8');
  const problems: string[] = [];
  const documents: unknown[] = [];
  for (const document of parseAllDocuments(text)) {
    for (const error of document.errors) problems.push(`${relative(ROOT, path)}: ${error.message}`);
    const value: unknown = document.toJS();
    if (value !== null && value !== undefined) documents.push(value);
  }
  return { documents, problems };
}

function asRecord(value: unknown): Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
}

function asList(value: unknown): unknown[] {
  return Array.isArray(value) ? value : [];
}

function loadManifests(path: string, problems: string[]): LoadedManifest[] {
  const loaded = loadYamlFile(path);
  problems.push(...loaded.problems);
  return loaded.documents.map((document) => ({ file: relative(ROOT, path), manifest: asRecord(document) as Manifest }));
}

/** Loads a kustomization like `kubectl kustomize` would find its inputs (no transformation applied). */
export function loadKustomization(dir: string): LoadedKustomization {
  const result: LoadedKustomization = { dir: relative(ROOT, dir), resources: [], generators: [], patches: [], images: [], problems: [] };
  const file = join(dir, 'kustomization.yaml');
  if (!existsSync(file)) {
    result.problems.push(`${relative(ROOT, dir)} has no kustomization.yaml`);
    return result;
  }
  const loaded = loadYamlFile(file);
  result.problems.push(...loaded.problems);
  const kustomization = asRecord(loaded.documents[0]);
  if (kustomization.kind !== 'Kustomization' || kustomization.apiVersion !== 'kustomize.config.k8s.io/v1beta1') {
    result.problems.push(`${relative(ROOT, file)} is not a kustomize.config.k8s.io/v1beta1 Kustomization`);
  }
  for (const field of Object.keys(kustomization)) {
    if (!KNOWN_FIELDS.has(field)) result.problems.push(`${relative(ROOT, file)}: unexpected field "${field}"`);
  }
  if (typeof kustomization.namespace === 'string') result.namespace = kustomization.namespace;

  for (const entry of asList(kustomization.resources)) {
    if (typeof entry !== 'string') {
      result.problems.push(`${relative(ROOT, file)}: a resource entry is not a path`);
      continue;
    }
    const path = join(dir, entry);
    if (!existsSync(path)) {
      result.problems.push(`${relative(ROOT, file)}: resource ${entry} does not exist`);
    } else if (statSync(path).isDirectory()) {
      const nested = loadKustomization(path);
      result.resources.push(...nested.resources);
      result.generators.push(...nested.generators);
      result.problems.push(...nested.problems);
      result.namespace ??= nested.namespace;
    } else {
      result.resources.push(...loadManifests(path, result.problems));
    }
  }

  for (const entry of asList(kustomization.configMapGenerator)) {
    const generator = asRecord(entry);
    const files = new Map<string, string>();
    for (const spec of asList(generator.files)) {
      if (typeof spec !== 'string') continue;
      const [key, source] = spec.includes('=') ? spec.split('=', 2) : [spec.split('/').pop() ?? spec, spec];
      const path = join(dir, source);
      if (!existsSync(path)) result.problems.push(`${relative(ROOT, file)}: configMapGenerator file ${source} does not exist`);
      files.set(key, relative(ROOT, path));
    }
    result.generators.push({ name: String(generator.name), files });
  }

  for (const entry of asList(kustomization.patches)) {
    const patch = asRecord(entry);
    if (typeof patch.path !== 'string') {
      result.problems.push(`${relative(ROOT, file)}: only file patches (path:) are used here`);
      continue;
    }
    const path = join(dir, patch.path);
    if (!existsSync(path)) result.problems.push(`${relative(ROOT, file)}: patch ${patch.path} does not exist`);
    else result.patches.push(...loadManifests(path, result.problems));
  }

  for (const entry of asList(kustomization.images)) {
    const image = asRecord(entry);
    result.images.push({
      name: String(image.name),
      newName: typeof image.newName === 'string' ? image.newName : undefined,
      newTag: typeof image.newTag === 'string' ? image.newTag : undefined,
    });
  }
  return result;
}
