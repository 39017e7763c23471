/**
 * An embedded line server for the word-count examples, standing in for `nc -lk 9999`: every
 * client that connects gets a sample text, line by line, looping forever.
 *
 * @module
 */
import { Effect } from "effect"
import type { Scope } from "effect"
import * as Net from "node:net"

/**
 * The opening of "The Frog King, or Iron Henry" (Brothers Grimm, tr. Margaret Hunt, 1884;
 * public domain), one short line each.
 *
 * @since 0.1.0
 * @category constants
 */
export const sampleText: ReadonlyArray<string> = [
  "In olden times when wishing still helped one,",
  "there lived a king whose daughters were all beautiful,",
  "but the youngest was so beautiful that the sun itself,",
  "which has seen so much, was astonished",
  "whenever it shone in her face.",
  "Close by the king's castle lay a great dark forest,",
  "and under an old lime-tree in the forest was a well,",
  "and when the day was very warm,",
  "the king's child went out into the forest",
  "and sat down by the side of the cool fountain,",
  "and when she was dull she took a golden ball,",
  "and threw it up on high and caught it,",
  "and this ball was her favorite plaything.",
]

/**
 * Options of {@link serveSampleText}.
 *
 * @since 0.1.0
 * @category models
 */
export interface SampleServerOptions {
  /** Lines sent per second to each client (default 5). */
  readonly linesPerSecond?: number | undefined
  /** Lines to replay (default {@link sampleText}). */
  readonly text?: ReadonlyArray<string> | undefined
}

/**
 * Serves the sample text on 127.0.0.1 (a free port) for as long as the scope is open: each
 * connection gets the lines from the first one on, at about `linesPerSecond`, looping
 * forever; a client that stops reading is skipped until it drains. Closing the scope closes
 * the server and every connection. Dies if no port can be bound.
 *
 * @example
 * ```ts
 * const program = Effect.scoped(Effect.gen(function*() {
 *   const { host, port } = yield* serveSampleText({ linesPerSecond: 10 })
 *   // ... socketTextReceiver(host, port) ...
 * }))
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const serveSampleText = (
  options?: SampleServerOptions,
): Effect.Effect<{ readonly host: "127.0.0.1"; readonly port: number }, never, Scope.Scope> => {
  const linesPerSecond = options?.linesPerSecond ?? 5
  const text = options?.text ?? sampleText
  if (!(linesPerSecond > 0) || text.length === 0) {
    return Effect.die(new RangeError("serveSampleText needs linesPerSecond > 0 and at least one line"))
  }
  const tickMillis = Math.max(10, 1000 / linesPerSecond)
  const linesPerTick = (linesPerSecond * tickMillis) / 1000

  const serve = (socket: Net.Socket, clients: Set<Net.Socket>) => {
    let next = 0
    let due = 1 // the first line goes out at once
    const tick = () => {
      if (socket.writableNeedDrain) return
      let chunk = ""
      while (due >= 1) {
        chunk += text[next] + "\n"
        next = (next + 1) % text.length
        due--
      }
      if (chunk.length > 0) socket.write(chunk)
      due += linesPerTick
    }
    const timer = setInterval(tick, tickMillis)
    clients.add(socket)
    socket.on("error", () => {})
    socket.on("close", () => {
      clearInterval(timer)
      clients.delete(socket)
    })
    tick()
  }

  return Effect.acquireRelease(
    Effect.callback<{ server: Net.Server; clients: Set<Net.Socket>; port: number }>((resume) => {
      const clients = new Set<Net.Socket>()
      const server = Net.createServer((socket) => serve(socket, clients))
      server.once("error", (error) => resume(Effect.die(error)))
      server.listen(0, "127.0.0.1", () => {
        const port = (server.address() as Net.AddressInfo).port
        resume(Effect.succeed({ server, clients, port }))
      })
    }),
    ({ clients, server }) =>
      Effect.callback<void>((resume) => {
        for (const socket of clients) socket.destroy()
        clients.clear()
        server.close(() => resume(Effect.void))
      }),
  ).pipe(Effect.map(({ port }) => ({ host: "127.0.0.1" as const, port })))
}
