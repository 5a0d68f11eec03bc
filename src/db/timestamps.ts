/**
 * Timestamps as exact text, shared by both backends. PostgreSQL prints timestamptz as
 * '2024-01-02 03:04:05.123456+00' (DateStyle ISO); a JS Date would drop the microseconds, so the
 * backends return ISO 8601 text instead:
 *
 *   timestamptz  '2024-01-02 03:04:05.123456+00'    → '2024-01-02T03:04:05.123456+00:00'
 *   timestamptz  '2024-01-02 03:04:05+05:30'         → '2024-01-02T03:04:05+05:30'
 *   timestamp    '2024-01-02 03:04:05.5'             → '2024-01-02T03:04:05.5'
 *   date         '2024-01-02'                        → '2024-01-02' (unchanged)
 *
 * The fraction is kept digit for digit and the offset is the server's (its TimeZone setting):
 * nothing is converted, so the text reads back into the same instant. Values ISO 8601 cannot
 * spell ('infinity', years BC, offsets with seconds) are returned as PostgreSQL printed them.
 */

const TS_RE = /^(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2}(?:\.\d+)?)(?:([+-])(\d{2})(?::(\d{2}))?)?$/;

/** PostgreSQL's text of a timestamp/timestamptz (DateStyle ISO) as ISO 8601 text. */
export function pgTimestampToIso(text: string): string {
  const m = TS_RE.exec(text);
  if (!m) return text;
  const [, date, time, sign, hh, mm] = m;
  if (sign === undefined) return `${date}T${time}`;
  return `${date}T${time}${sign}${hh}:${mm ?? '00'}`;
}

/** Dates stay text ('2024-01-02'): a JS Date would add a time zone to a calendar day. */
export function pgDateText(text: string): string {
  return text;
}

/** Type OIDs of the date/time types the backends return as text. */
export const PG_TIMESTAMPTZ = 1184;
export const PG_TIMESTAMP = 1114;
export const PG_DATE = 1082;
