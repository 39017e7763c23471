/**
 * Graph checkpoints and recovery (Spark's `Checkpoint` + `JobGenerator.restart`): after a batch
 * at a checkpoint time completes, the data of every checkpointed node (keyed state, file-stream
 * selections, input positions) is captured on the job fiber and written as one checkpoint by a
 * writer fiber, off the batch path; `getOrCreate` reads the newest readable checkpoint, and the
 * recovered context restores it, re-runs every batch after it that was pending or missed while
 * the process was down, then continues with the clock.
 *
 * Keyed state is incremental: the first checkpoint of a fresh run, and every `fullEvery`-th
 * after it, holds the whole state; the others are deltas holding only the keys changed since
 * the previous checkpoint (and the keys removed); a recovered run goes on with the chain it
 * recovered from. Inputs' data is whole in every checkpoint. Recovery applies
 * the full checkpoint a delta builds on, then each delta in order.
 *
 * Ordering: a checkpoint is durable before the inputs are told (`written`, which releases the
 * write-ahead log segments and Kafka offsets it covers), and that happens in the writer, after
 * the write completes; writes run one at a time in batch order, and a checkpoint batch waits
 * for the previous write only if it is still running.
 * @internal
 */
import { Cause, Effect, Exit, Fiber, Option, type Scope } from "effect"
import * as Checkpoint from "../Checkpoint.ts"
import { ValidationError } from "../Errors.ts"
import * as Time from "../Time.ts"
import type { Graph } from "./graph.ts"
import { type InputCheckpoint, InputNode, type Node, type NodeEnv } from "./node.ts"
import * as Lock from "./lock.ts"
import { isCheckpointed, isIncremental, minChainKeys } from "./state.ts"

/**
 * Keyed state is written whole every `fullEvery`-th checkpoint at the latest, and sooner once
 * the deltas since the last full one hold more keys than half the state and than
 * `minChainKeys` (recovery applies the full checkpoint and every delta after it, so a long chain
 * makes recovery of a large state slow; a small one replays quickly). @internal
 */
export const fullEvery = 10

/** See {@link fullEvery} (defined with the state nodes, which use it too). @internal */
export { minChainKeys }

/** What one checkpoint holds. @internal */
export interface Payload {
  readonly time: number
  readonly zeroTime: number
  readonly batchMillis: number
  readonly nodes: Record<string, unknown>
}

/** @internal */
export const payloadOf = (checkpoint: Checkpoint.Checkpoint, location: string): Payload => {
  const p = checkpoint.payload as Payload
  if (
    typeof p !== "object" || p === null || typeof p.zeroTime !== "number" || typeof p.batchMillis !== "number" ||
    typeof p.nodes !== "object" || p.nodes === null
  ) {
    throw new Checkpoint.CheckpointError({
      location,
      message: `Cannot read checkpoint ${
        Checkpoint.fileName(checkpoint.time)
      } in "${location}": it is not a graph checkpoint`,
    })
  }
  return p
}

/**
 * A checkpointed node or input. `capture(t, full)` runs on the job fiber and returns the data,
 * or (incremental keyed state) a function encoding it, run by the writer. `incremental`
 * participants are restored from the whole chain of a delta checkpoint, the others from its
 * newest checkpoint only.
 */
interface Participant extends InputCheckpoint {
  readonly incremental?: boolean
  readonly capture?: (time: number, full: boolean) => unknown
  /** Starts recording changes (checkpointing is on). */
  readonly track?: () => void
  /** Keys a delta now would hold, and keys in the state. */
  readonly changes?: () => { readonly changed: number; readonly size: number }
}

/** The checkpointed nodes of the started graph, by stable key. */
const participants = (graph: Graph): Map<string, Participant> => {
  const out = new Map<string, Participant>()
  const perKind = new Map<string, number>()
  for (const node of graph.nodes) {
    if (node.zeroTime === undefined) continue // not reachable from an output
    if (isCheckpointed(node)) {
      const n = perKind.get(node.kind) ?? 0
      perKind.set(node.kind, n + 1)
      const key = node.checkpointName ?? `${node.kind}#${n}`
      if (out.has(key)) {
        throw new ValidationError({ message: `Two stateful operators share the checkpoint name "${key}"` })
      }
      if (isIncremental(node)) {
        out.set(key, {
          key,
          incremental: true,
          snapshot: () => node.snapshotCheckpoint(),
          capture: (_t, full) => node.captureCheckpoint(full),
          track: () => node.trackChanges(),
          changes: () => node.changeCount(),
          restore: (data, time) => node.restoreCheckpoint(data, time),
        })
      } else {
        out.set(key, {
          key,
          snapshot: () => node.snapshotCheckpoint(),
          restore: (data, time) => node.restoreCheckpoint(data, time),
        })
      }
    } else if (node instanceof InputNode) {
      const data = node.checkpointData()
      if (data === undefined) continue
      if (out.has(data.key)) {
        throw new ValidationError({ message: `Two inputs share the checkpoint key "${data.key}"` })
      }
      out.set(data.key, data)
    }
  }
  return out
}

/** The interval of graph snapshots: the smallest checkpoint interval of a stateful node, else every batch. */
const intervalOf = (graph: Graph): number => {
  let interval: number | undefined
  for (const node of graph.nodes) {
    if (node.zeroTime === undefined || !node.mustCheckpoint || node.checkpointMillis === undefined) continue
    interval = interval === undefined ? node.checkpointMillis : Math.min(interval, node.checkpointMillis)
  }
  return interval ?? graph.batchMillis
}

/** What a started context does with checkpoints. @internal */
export interface Runtime {
  /**
   * If `t` is a checkpoint time: captures the checkpoint after batch `t` and hands it to the
   * writer; a write that fails later calls `fail` with its error (which stops the context).
   */
  readonly afterBatch: (t: number, fail: (cause: unknown) => Effect.Effect<void>) => Effect.Effect<void>
  /** Waits until every captured checkpoint has been written (or failed). */
  readonly flush: Effect.Effect<void>
  /** Batch times to run before the clock's first batch `first`: pending and missed ones. */
  readonly recoverTimes: (first: number) => ReadonlyArray<number>
  readonly interval: number
}

/**
 * Called by `start` after the graph is initialised: refuses queue streams, opens the store
 * (the environment's `CheckpointStore`, else a file-system store in `directory`), takes the
 * directory's lock for the scope (file-system store; fails with `CheckpointLockedError` when a
 * live context holds it) and restores the recovered snapshot, if any. `undefined` when
 * checkpointing is off.
 *
 * Each checkpoint write first checks that the lock is still ours (a deleted directory fails the
 * batch with a `CheckpointError` saying so), is durable when `Checkpoint.write` returns, then
 * writes the used marker beside the directory (once per run) and only then tells the inputs
 * (which may delete write-ahead log segments the checkpoint covers).
 * @internal
 */
export const prepare = (
  graph: Graph,
  directory: string | undefined,
  recovered: Checkpoint.Checkpoint | undefined,
  /** The store `getOrCreate` read the recovered checkpoint from, if the environment gave one. */
  given?: Checkpoint.CheckpointStoreShape | undefined,
): Effect.Effect<
  Runtime | undefined,
  Checkpoint.CheckpointError | Checkpoint.CheckpointLockedError | ValidationError,
  NodeEnv | Scope.Scope
> =>
  Effect.gen(function* () {
    if (directory === undefined) return undefined
    for (const input of graph.inputs) {
      if (input.kind === "QueueInputDStream") {
        return yield* new ValidationError({
          message:
            "queueStream doesn't support checkpointing: its batches cannot be recovered, so don't use queueStream when checkpointing is enabled",
        })
      }
    }
    const { store, onDisk } = given !== undefined ? { store: given, onDisk: false } : yield* resolveStore(directory)
    const fileMode = (yield* Checkpoint.Permissions).file
    const lock = onDisk ? yield* Lock.acquire(directory, fileMode) : undefined
    const env = yield* Effect.context<NodeEnv>()
    let marked = !onDisk
    const nodes = yield* Effect.try({ try: () => participants(graph), catch: (e) => e as ValidationError })
    const interval = intervalOf(graph)
    const zero = graph.zeroTime!
    let lastCheckpoint: number | undefined
    if (recovered !== undefined) {
      const payload = yield* Effect.try({
        try: () => payloadOf(recovered, store.location),
        catch: (e) => e as Checkpoint.CheckpointError,
      })
      lastCheckpoint = recovered.time
      for (const key of Object.keys(payload.nodes)) {
        if (!nodes.has(key)) {
          return yield* new Checkpoint.CheckpointError({
            location: store.location,
            message: `Cannot recover from checkpoint ${
              Checkpoint.fileName(recovered.time)
            } in "${store.location}": it holds state "${key}" that no operator of this pipeline has; name the stateful operator as before or start from an empty checkpoint directory`,
          })
        }
      }
      const chain = recovered.chain ?? []
      for (const [key, participant] of nodes) {
        if (!(key in payload.nodes)) {
          yield* Effect.logWarning(
            `Checkpoint ${Checkpoint.fileName(recovered.time)} has no state for "${key}"; it starts empty`,
          )
          continue
        }
        const segments = participant.incremental === true
          ? [...chain.map((c) => ({ time: c.time, data: nodesOf(c.payload)[key] })), {
            time: recovered.time,
            data: payload.nodes[key],
          }]
          : [{ time: recovered.time, data: payload.nodes[key] }]
        for (const segment of segments) {
          if (segment.data === undefined) continue
          try {
            participant.restore(segment.data, segment.time)
          } catch (cause) {
            return yield* new Checkpoint.CheckpointError({
              location: store.location,
              message: `Cannot decode "${key}" from checkpoint ${
                Checkpoint.fileName(segment.time)
              } in "${store.location}": ${cause instanceof Error ? cause.message : String(cause)}`,
              cause,
            })
          }
        }
      }
      yield* Effect.logInfo(
        `Recovered from checkpoint ${Checkpoint.fileName(recovered.time)} in "${store.location}" (batch ${
          Time.format(recovered.time)
        })`,
      )
    }
    for (const participant of nodes.values()) participant.track?.()
    const scope = yield* Effect.scope
    /** The write in flight, if any; writes run one at a time, in batch order. */
    let writing: Fiber.Fiber<void> | undefined
    /** A write failed: later checkpoints would build on it, so none is written. */
    let failed = false
    /**
     * The last checkpoint (captured in this run, or recovered: the chain goes on from it) and
     * the deltas since its full one.
     */
    let previous: number | undefined = recovered?.time
    let deltas = recovered?.chain?.length ?? 0
    /** Keys in the deltas since the last full checkpoint (unknown for a recovered chain: counted from here). */
    let sinceFull = 0
    if (recovered !== undefined) Checkpoint.noteChain(store, recovered)
    return {
      interval,
      afterBatch: (t, fail) =>
        Effect.gen(function* () {
          if ((t - zero) % interval !== 0 || failed) return
          if (writing !== undefined) yield* Fiber.await(writing)
          if (failed) return
          let changed = 0
          let size = 0
          for (const participant of nodes.values()) {
            const counts = participant.changes?.()
            if (counts !== undefined) {
              changed += counts.changed
              size += counts.size
            }
          }
          const full = previous === undefined || deltas >= fullEvery - 1 ||
            sinceFull + changed > Math.max(size / 2, minChainKeys)
          const base = full ? undefined : previous
          deltas = full ? 0 : deltas + 1
          sinceFull = full ? 0 : sinceFull + changed
          previous = t
          /** Each participant's data, or (incremental keyed state) the function encoding it. */
          const captured: Array<readonly [string, { readonly data: unknown } | { readonly encode: () => unknown }]> = []
          for (const [key, participant] of nodes) {
            const capture = participant.capture
            captured.push([
              key,
              capture !== undefined ? { encode: capture(t, full) as () => unknown } : { data: participant.snapshot(t) },
            ])
          }
          const oldestKept = t - (Checkpoint.defaultKeep - 1) * interval
          const write = Effect.gen(function* () {
            // Encoding starts on a later macrotask: the batch completes (and whatever awaits it
            // runs) first. A real timer on purpose: the batch clock may be a TestClock.
            yield* Effect.promise(() => new Promise<void>((resolve) => setTimeout(resolve, 0)))
            const data: Record<string, unknown> = {}
            for (const [key, value] of captured) {
              if ("data" in value) data[key] = value.data
              else {
                try {
                  data[key] = value.encode()
                } catch (cause) {
                  return yield* new Checkpoint.CheckpointError({
                    location: store.location,
                    message: `Cannot encode "${key}" for the checkpoint of ${t} ms: ${
                      cause instanceof Error ? cause.message : String(cause)
                    }; give the stateful operator Schemas for its keys and states`,
                    cause,
                  })
                }
              }
            }
            const payload: Payload = { time: t, zeroTime: zero, batchMillis: graph.batchMillis, nodes: data }
            if (lock !== undefined) yield* lock.verify
            yield* Checkpoint.write(store, t, payload, Checkpoint.defaultKeep, base)
            if (!marked) {
              yield* Effect.provideContext(Lock.markUsed(directory, fileMode), env)
              marked = true
            }
            yield* Effect.forEach(nodes.values(), (p) => p.written?.(t, oldestKept) ?? Effect.void, { discard: true })
          })
          writing = yield* Effect.forkIn(
            Effect.uninterruptible(Effect.flatMap(Effect.exit(write), (exit) => {
              if (Exit.isSuccess(exit)) return Effect.void
              failed = true
              return fail(Cause.squash(exit.cause))
            })),
            scope,
          )
        }),
      flush: Effect.suspend(() => writing === undefined ? Effect.void : Effect.asVoid(Fiber.await(writing))),
      recoverTimes: (first) => {
        if (lastCheckpoint === undefined) return []
        const times: Array<number> = []
        for (let t = lastCheckpoint + graph.batchMillis; t < first; t += graph.batchMillis) times.push(t)
        return times
      },
    }
  })

/**
 * The environment's store, or a file-system store in `directory` (`onDisk`: the directory's
 * lock and used marker apply). @internal
 */
export const resolveStore = (
  directory: string,
): Effect.Effect<
  { readonly store: Checkpoint.CheckpointStoreShape; readonly onDisk: boolean },
  Checkpoint.CheckpointError,
  NodeEnv
> =>
  Effect.flatMap(
    Effect.serviceOption(Checkpoint.CheckpointStore),
    (store) =>
      Option.isSome(store)
        ? Effect.succeed({ store: store.value, onDisk: false as boolean })
        : Effect.map(Checkpoint.makeFileSystem(directory), (fs) => ({ store: fs, onDisk: true as boolean })),
  )

/** The environment's store, or a file-system store in `directory`. @internal */
export const storeFor = (
  directory: string,
): Effect.Effect<Checkpoint.CheckpointStoreShape, Checkpoint.CheckpointError, NodeEnv> =>
  Effect.map(resolveStore(directory), (r) => r.store)

/**
 * `getOrCreate`'s read: the newest readable checkpoint of `directory`. When there is none but
 * the used marker beside the directory shows there were some (the directory was deleted or
 * emptied), fails with `CheckpointMissingError` unless `allowFreshStart`.
 * @internal
 */
export const readForRecovery = (
  directory: string,
  allowFreshStart: boolean,
): Effect.Effect<
  Option.Option<Checkpoint.Checkpoint>,
  Checkpoint.CheckpointError | Checkpoint.CheckpointMissingError,
  NodeEnv
> =>
  Effect.gen(function* () {
    const { store, onDisk } = yield* resolveStore(directory)
    const latest = yield* Checkpoint.readLatest(store)
    if (Option.isNone(latest) && onDisk) yield* Lock.checkNotLost(directory, allowFreshStart)
    return latest
  })

const nodesOf = (payload: unknown): Record<string, unknown> => {
  const nodes = (payload as Payload | null)?.nodes
  return typeof nodes === "object" && nodes !== null ? nodes : {}
}

/** The nodes' data for a manual snapshot (benchmarks, tests). @internal */
export const snapshotNode = (node: Node<any>): unknown => isCheckpointed(node) ? node.snapshotCheckpoint() : undefined
