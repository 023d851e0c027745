/**
 * Loopback ports for the test control plane. Each is checked by binding it, all are held until
 * every one is found (so they differ), and they come from below the kernel's ephemeral range where
 * it says where that is: a port the kernel hands out for `listen(0)` can as well become the source
 * port of some process's outgoing connection between the check and the component's own bind.
 */
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';

/** Lowest port tried; below it sit well-known services. */
const FIRST = 10_000;
/** Random tries below the ephemeral range before falling back to any free port. */
const TRIES = 50;

/** `count` distinct ports on 127.0.0.1 that nothing listens on now. */
export async function freePorts(count: number): Promise<number[]> {
  const below = ephemeralStart();
  const held: Server[] = [];
  try {
    for (let tries = 0; held.length < count; tries++) {
      const port = below > FIRST && tries < TRIES ? FIRST + Math.floor(Math.random() * (below - FIRST)) : 0;
      const server = await listen(port);
      if (server) held.push(server);
    }
    return held.map((s) => {
      const address = s.address();
      return typeof address === 'object' && address ? address.port : 0;
    });
  } finally {
    await Promise.all(held.map((s) => new Promise((resolve) => s.close(resolve))));
  }
}

/** First port of the ephemeral range (Linux), or 0 when unknown. */
function ephemeralStart(): number {
  try {
    return Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]) || 0;
  } catch {
    return 0;
  }
}

/** A server listening on the port, or undefined when the port is taken. */
function listen(port: number): Promise<Server | undefined> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(undefined));
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}
