/** A Dockerfile read as instructions grouped by build stage. */
export interface Instruction {
  keyword: string;
  /** Everything after the keyword, continuation lines joined. */
  args: string;
  line: number;
}

export interface Stage {
  name: string;
  /** The image or earlier stage it starts from, as written (`${NODE_IMAGE}`, `deps`). */
  from: string;
  instructions: Instruction[];
}

export interface Dockerfile {
  /** ARGs before the first FROM, with their defaults. */
  globalArgs: Map<string, string | undefined>;
  stages: Stage[];
}

export function parseDockerfile(text: string): Dockerfile {
  const instructions: Instruction[] = [];
  const lines = text.split('\n');
  for (let index = 0; index < lines.length; index += 1) {
    const line = lines[index].trim();
    if (line === '' || line.startsWith('#')) continue;
    const start = index + 1;
    let joined = line;
    while (joined.endsWith('\\') && index + 1 < lines.length) {
      index += 1;
      const next = lines[index].trim();
      joined = joined.slice(0, -1).trimEnd() + (next.startsWith('#') ? '' : ` ${next}`);
    }
    const [keyword, ...rest] = joined.split(/\s+/);
    instructions.push({ keyword: keyword.toUpperCase(), args: rest.join(' '), line: start });
  }
  const result: Dockerfile = { globalArgs: new Map(), stages: [] };
  for (const instruction of instructions) {
    if (instruction.keyword === 'FROM') {
      const match = /^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$/i.exec(instruction.args);
      result.stages.push({ name: match?.[2] ?? String(result.stages.length), from: match?.[1] ?? '', instructions: [] });
    } else if (result.stages.length === 0) {
      if (instruction.keyword === 'ARG') {
        const [name, value] = instruction.args.split('=', 2);
        result.globalArgs.set(name, value);
      }
    } else {
      result.stages[result.stages.length - 1].instructions.push(instruction);
    }
  }
  return result;
}

export function stage(dockerfile: Dockerfile, name: string): Stage | undefined {
  return dockerfile.stages.find((candidate) => candidate.name === name);
}

/** The stage and the stages it is built FROM, nearest first. */
export function lineage(dockerfile: Dockerfile, name: string): Stage[] {
  const chain: Stage[] = [];
  let current = stage(dockerfile, name);
  while (current && !chain.includes(current)) {
    chain.push(current);
    current = stage(dockerfile, current.from);
  }
  return chain;
}

/** The last value of an instruction in a stage, inherited from its parents. */
export function effective(dockerfile: Dockerfile, name: string, keyword: string): Instruction | undefined {
  for (const candidate of lineage(dockerfile, name)) {
    const found = candidate.instructions.filter((instruction) => instruction.keyword === keyword).pop();
    if (found) return found;
  }
  return undefined;
}

/** The base image a stage finally runs on, global ARG defaults substituted. */
export function baseImage(dockerfile: Dockerfile, name: string): string {
  const chain = lineage(dockerfile, name);
  const root = chain[chain.length - 1]?.from ?? '';
  return root.replace(/\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?/g, (_whole, arg: string) => dockerfile.globalArgs.get(arg) ?? '');
}

export interface Copy {
  from?: string;
  sources: string[];
  destination: string;
  line: number;
}

export function copies(target: Stage): Copy[] {
  return target.instructions
    .filter((instruction) => instruction.keyword === 'COPY')
    .map((instruction) => {
      const words = instruction.args.split(/\s+/);
      const from = words.find((word) => word.startsWith('--from='))?.slice('--from='.length);
      const paths = words.filter((word) => !word.startsWith('--'));
      return { from, sources: paths.slice(0, -1), destination: paths[paths.length - 1], line: instruction.line };
    });
}
