/**
 * A TCP server for receiver tests, on `node:net` (runs on Deno and Bun): listens on
 * 127.0.0.1, writes text to every connected client, and can drop clients or close.
 *
 * @module
 */
import * as Net from "node:net"

/**
 * A running test line server.
 *
 * @since 0.1.0
 * @category models
 */
export interface LineServer {
  /** The port it listens on. */
  readonly port: number
  /** Writes `text` as-is (add the `\n` yourself) to every connected client; resolves once written. */
  readonly send: (text: string | Uint8Array) => Promise<void>
  /** Resolves once at least `n` clients are connected at the same time. */
  readonly waitForClients: (n: number) => Promise<void>
  /** Destroys every client connection; keeps listening. */
  readonly dropClients: () => void
  /** Ends every client connection (clean EOF after pending writes) and stops listening. */
  readonly close: () => Promise<void>
  /** Connections accepted so far. */
  readonly connections: number
  /** Clients connected now. */
  readonly connected: number
}

/**
 * Starts a line server on 127.0.0.1 (`port` 0 or omitted: a free port). Passing the port of a
 * closed server restarts on the same port.
 *
 * @since 0.1.0
 * @category constructors
 */
export const startLineServer = async (options?: { readonly port?: number }): Promise<LineServer> => {
  const clients = new Set<Net.Socket>()
  const waiters: Array<{ n: number; resolve: () => void }> = []
  let accepted = 0

  const notify = () => {
    for (let i = waiters.length - 1; i >= 0; i--) {
      if (clients.size >= waiters[i].n) {
        waiters[i].resolve()
        waiters.splice(i, 1)
      }
    }
  }

  const server = Net.createServer((socket) => {
    accepted++
    clients.add(socket)
    socket.on("error", () => {})
    socket.on("close", () => clients.delete(socket))
    notify()
  })

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject)
    server.listen(options?.port ?? 0, "127.0.0.1", () => {
      server.off("error", reject)
      resolve()
    })
  })
  const port = (server.address() as Net.AddressInfo).port

  const write = (socket: Net.Socket, data: string | Uint8Array) =>
    new Promise<void>((resolve, reject) => {
      socket.write(data, (error) => (error ? reject(error) : resolve()))
    })

  return {
    port,
    send: async (text) => {
      await Promise.all(Array.from(clients, (socket) => write(socket, text)))
    },
    waitForClients: (n) =>
      new Promise<void>((resolve) => {
        waiters.push({ n, resolve })
        notify()
      }),
    dropClients: () => {
      for (const socket of clients) socket.destroy()
      clients.clear()
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of clients) socket.end()
        // a client that does not close after end() would keep `server.close` waiting
        const timer = setTimeout(() => {
          for (const socket of clients) socket.destroy()
        }, 1000)
        server.close(() => {
          clearTimeout(timer)
          resolve()
        })
      }),
    get connections() {
      return accepted
    },
    get connected() {
      return clients.size
    },
  }
}
