/**
 * Graph checkpoints and recovery (Spark's `Checkpoint` + `JobGenerator.restart`): after a batch
 * at a checkpoint time completes, the data of every checkpointed node (keyed state, file-stream
 * selections) is written as one snapshot; `getOrCreate` reads the newest readable snapshot, and
 * the recovered context restores it, re-runs every batch after the snapshot that was pending or
 * missed while the process was down, then continues with the clock.
 * @internal
 */
import { Effect, Option, type Scope } from "effect"
import * as Checkpoint from "../Checkpoint.ts"
import { ValidationError } from "../Errors.ts"
import * as Time from "../Time.ts"
import type { Graph } from "./graph.ts"
import { type InputCheckpoint, InputNode, type Node, type NodeEnv } from "./node.ts"
import * as Lock from "./lock.ts"
import { isCheckpointed } from "./state.ts"

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

type Participant = InputCheckpoint

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
      out.set(key, {
        key,
        snapshot: () => node.snapshotCheckpoint(),
        restore: (data, time) => node.restoreCheckpoint(data, time),
      })
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
  /** Writes the snapshot after batch `t` if `t` is a checkpoint time. */
  readonly afterBatch: (t: number) => Effect.Effect<void, Checkpoint.CheckpointError>
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
      for (const [key, participant] of nodes) {
        if (!(key in payload.nodes)) {
          yield* Effect.logWarning(
            `Checkpoint ${Checkpoint.fileName(recovered.time)} has no state for "${key}"; it starts empty`,
          )
          continue
        }
        try {
          participant.restore(payload.nodes[key], recovered.time)
        } catch (cause) {
          return yield* new Checkpoint.CheckpointError({
            location: store.location,
            message: `Cannot decode "${key}" from checkpoint ${
              Checkpoint.fileName(recovered.time)
            } in "${store.location}": ${cause instanceof Error ? cause.message : String(cause)}`,
            cause,
          })
        }
      }
      yield* Effect.logInfo(
        `Recovered from checkpoint ${Checkpoint.fileName(recovered.time)} in "${store.location}" (batch ${
          Time.format(recovered.time)
        })`,
      )
    }
    return {
      interval,
      afterBatch: (t) =>
        Effect.suspend(() => {
          if ((t - zero) % interval !== 0) return Effect.void
          const data: Record<string, unknown> = {}
          for (const [key, participant] of nodes) data[key] = participant.snapshot(t)
          const payload: Payload = { time: t, zeroTime: zero, batchMillis: graph.batchMillis, nodes: data }
          const oldestKept = t - (Checkpoint.defaultKeep - 1) * interval
          return Effect.gen(function* () {
            if (lock !== undefined) yield* lock.verify
            yield* Checkpoint.write(store, t, payload)
            if (!marked) {
              yield* Effect.provideContext(Lock.markUsed(directory, fileMode), env)
              marked = true
            }
            yield* Effect.forEach(nodes.values(), (p) => p.written?.(t, oldestKept) ?? Effect.void, { discard: true })
          })
        }),
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

/** The nodes' data for a manual snapshot (benchmarks, tests). @internal */
export const snapshotNode = (node: Node<any>): unknown => isCheckpointed(node) ? node.snapshotCheckpoint() : undefined
