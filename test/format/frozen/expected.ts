/** What the frozen format_version 1 example archives (v1/) were made from and must still yield. */
export const FROZEN_V1 = {
  fixture: 'outreach-workflow-agent.v2-early.af',
  passages: 6,
  createdAt: '2026-12-04T00:00:00.000Z',
  /** Public test values: these archives are examples, not secrets. */
  passphrase: 'frozen example passphrase v1',
  scrypt: { N: 1024, r: 8, p: 1 },
  secretValue: 'frozen-secret-value-7f3a',
} as const;
