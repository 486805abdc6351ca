import { ERRORS_KEYWORD, FieldErrors } from '@smart-router/api-contract';

interface ValidationIssue {
  keyword: string;
  instancePath: string;
  params: Record<string, unknown>;
}

interface SchemaNode {
  properties?: Record<string, SchemaNode & { [ERRORS_KEYWORD]?: FieldErrors }>;
}

const INVALID_BODY = { status: 400, code: 'INVALID_BODY', message: 'invalid request body' };

/**
 * Turns Fastify's schema validation error into our answer, with the field's
 * own code and message from its `x-errors` (CALL_SID_REQUIRED when call_sid is
 * absent, null or empty; INVALID_CALL_SID otherwise; ...), so the schema keeps
 * the error contract that the hand-written parsers had.
 */
export function schemaErrorAnswer(
  issues: ValidationIssue[],
  where: string | undefined,
  schema: SchemaNode | undefined,
  input: unknown,
): { status: number; code: string; message: string } {
  const issue = issues[0];
  if (!issue) return INVALID_BODY;
  const name = issue.keyword === 'required' && issue.instancePath === '' ? String(issue.params.missingProperty) : issue.instancePath.split('/')[1];
  if (!name) return where === 'body' ? INVALID_BODY : { status: 400, code: 'INVALID_REQUEST', message: `invalid ${where ?? 'request'}` };
  const errors = schema?.properties?.[name]?.[ERRORS_KEYWORD];
  const value = (input as Record<string, unknown> | null | undefined)?.[name];
  const missing = value === undefined || value === null || value === '';
  const chosen = errors ? (missing && errors.missing ? errors.missing : errors.invalid) : { code: 'INVALID_FIELD', message: `${name} is invalid` };
  return { status: 400, ...chosen };
}
