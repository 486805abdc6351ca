const ENTITIES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' };

/** Characters XML 1.0 forbids outright (even escaped): C0 controls but tab, LF, CR; U+FFFE/U+FFFF; lone surrogates. */
// eslint-disable-next-line no-control-regex
const FORBIDDEN = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/**
 * Escapes a value for element text or a double- or single-quoted attribute.
 * Provider documents are built from strings, so every interpolated value goes
 * through here: a ws_url with `&` (a query in VOICE_AGENT_BASE_URL) must not
 * produce XML the provider rejects, and nothing may inject markup.
 */
export function escapeXml(value: string): string {
  return value.replace(FORBIDDEN, '').replace(/[&<>"']/g, (character) => ENTITIES[character]);
}
