/**
 * A TCP proxy on 127.0.0.1 for fault tests: forwards to a target port and, on demand, cuts
 * connections (the client sees a reset mid-request, as when a network link drops).
 */
import * as net from 'node:net';

export interface TcpProxy {
  port: number;
  /** Cut every connection once this many client→server bytes have passed through it in total (null: never). */
  cutAfterBytes: number | null;
  /** Cut only this many times (then forward normally); Infinity: always. */
  cutsLeft: number;
  /** Connections cut so far. */
  cuts: number;
  /** Client→server bytes forwarded so far. */
  forwarded: number;
  close(): Promise<void>;
}

export async function startTcpProxy(targetPort: number, targetHost = '127.0.0.1'): Promise<TcpProxy> {
  const sockets = new Set<net.Socket>();
  const state: TcpProxy = { port: 0, cutAfterBytes: null, cutsLeft: Infinity, cuts: 0, forwarded: 0, close: async () => undefined };
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, targetHost);
    sockets.add(client);
    sockets.add(upstream);
    const drop = (): void => {
      client.resetAndDestroy();
      upstream.destroy();
    };
    client.on('data', (d: Buffer) => {
      state.forwarded += d.length;
      if (state.cutAfterBytes !== null && state.cutsLeft > 0 && state.forwarded >= state.cutAfterBytes) {
        state.cutsLeft--;
        state.cuts++;
        state.forwarded = 0;
        drop();
        return;
      }
      upstream.write(d);
    });
    upstream.on('data', (d) => client.write(d));
    client.on('end', () => upstream.end());
    upstream.on('end', () => client.end());
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.on('close', () => sockets.delete(client));
    upstream.on('close', () => sockets.delete(upstream));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  state.port = (server.address() as net.AddressInfo).port;
  state.close = () =>
    new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    });
  return state;
}
