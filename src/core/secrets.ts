/**
 * The part of VS Code's SecretStorage the library reads (the vault passphrase, the Qdrant API key);
 * no `vscode` import outside src/extension. The extension passes its SecretStorage, the CLI none.
 */
export interface SecretReader {
  get(key: string): PromiseLike<string | undefined>;
}
