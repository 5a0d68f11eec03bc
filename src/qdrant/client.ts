/**
 * The one place that loads `@qdrant/js-client-rest`. The package ships ESM type declarations
 * ("type": "module") but also a CommonJS build (its `require` export), which is what this
 * CommonJS project loads at run time; the types are imported in `import` resolution mode.
 */
import type * as QdrantModule from '@qdrant/js-client-rest' with { 'resolution-mode': 'import' };

// eslint-disable-next-line @typescript-eslint/no-require-imports
const qdrant = require('@qdrant/js-client-rest') as typeof QdrantModule;

export const QdrantClient = qdrant.QdrantClient;
export type QdrantClient = QdrantModule.QdrantClient;
export type QdrantClientParams = QdrantModule.QdrantClientParams;
export type Schemas = QdrantModule.Schemas;
