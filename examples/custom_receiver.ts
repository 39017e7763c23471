/**
 * Spark's CustomReceiver example: a hand-written socket receiver (the seed's `MyReceiver`)
 * feeding a word count every second.
 *
 *   deno run -A examples/custom_receiver.ts [host port]
 *   bun examples/custom_receiver.ts [host port]
 *
 * With `nc -lk 9999` in another terminal and `localhost 9999` as arguments, every line typed
 * shows up in that batch's counts; stopping `nc` makes the receiver reconnect every 2 s until
 * it is back. With no arguments, an embedded server on a free port replays a sample text.
 * Ctrl-C stops it gracefully.
 */
import process from "node:process"
import * as Net from "node:net"
import * as Readline from "node:readline"
import { Effect } from "effect"
import { Receiver, Runtime, StreamingContext } from "../mod.ts"
import { serveSampleText } from "./_sample_server.ts"

/**
 * The receiver: `run` is its `onStart`, the scope's release its `onStop`. It connects, stores
 * every line, and asks to be restarted when the connection fails or ends.
 */
const myReceiver = (host: string, port: number) =>
  Receiver.make<string>({
    name: `custom ${host}:${port}`,
    run: (store) =>
      Effect.gen(function* () {
        // acquire the connection in the receiver's scope: closed on stop and before a restart
        const socket = yield* Effect.acquireRelease(
          Effect.callback<Net.Socket, Error>((resume) => {
            const socket = Net.connect({ host, port })
            socket.once("connect", () => resume(Effect.succeed(socket)))
            socket.once("error", (error) => resume(Effect.fail(error)))
          }),
          (socket) => Effect.sync(() => socket.destroy()),
        ).pipe(
          Effect.catch((error) => store.restart(`Error connecting to ${host}:${port}`, error)),
        )
        const lines = Readline.createInterface({ input: socket, crlfDelay: Infinity })[Symbol.asyncIterator]()
        while (!(yield* store.isStopped)) {
          const next = yield* Effect.tryPromise(() => lines.next()).pipe(
            Effect.catch((error) => store.restart("Error receiving data", error)),
          )
          if (next.done) break
          yield* store(next.value)
        }
        return yield* store.restart("Trying to connect again")
      }),
  })

const args = process.argv.slice(2)

const program = Effect.gen(function* () {
  const { host, port } = args.length >= 2 ? { host: args[0], port: Number(args[1]) } : yield* serveSampleText()
  yield* Effect.log(`Counting words received by a custom receiver from ${host}:${port}`)

  const ssc = yield* StreamingContext.make({ batchInterval: "1 second" })
  ssc.receiverStream(myReceiver(host, port))
    .flatMap((line) => line.split(" "))
    .mapToPair((word) => [word, 1])
    .reduceByKey((a, b) => a + b)
    .print()
  yield* ssc.start
  yield* ssc.awaitTermination
}).pipe(Effect.scoped)

Runtime.runMain(program)
