/* The S3-compatible test server's coordinates, handed to the extension host by test/extension/run.ts. */
export const S3_ENV_NAME = 'AGENT_VAULT_EXT_TEST_S3';

export interface ExtTestS3 {
  /** http://127.0.0.1:<port> (moto) */
  endpoint: string;
}
