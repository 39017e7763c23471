/**
 * Input streams: queue (tests), receiver-based (sockets, custom receivers) and the supervisor
 * that runs a receiver as a scoped resource and restarts it on failure.
 * @internal
 */
import {
  Cause,
  Clock,
  Deferred,
  Duration,
  Effect,
  Exit,
  Fiber,
  FileSystem,
  Option,
  Path,
  Queue,
  Schedule,
} from "effect"
import type { Scope } from "effect"
import { describeCause, ReceiverError, ValidationError } from "../Errors.ts"
import type { BatchInfo, ReceiverInfo } from "../Listener.ts"
import * as RateEstimator from "../RateEstimator.ts"
import type { PIDOptions } from "../RateEstimator.ts"
import {
  defaultRestartSchedule,
  jsonSerializer,
  type Receiver,
  type ReceiverSettings,
  restartFailure,
  type Serializer,
  type StorageLevel,
  type Store,
} from "../Receiver.ts"
import * as Time from "../Time.ts"
import {
  type Batch,
  type InputCheckpoint,
  InputNode,
  type InputRuntime,
  type NodeContext,
  type NodeEnv,
} from "./node.ts"
import * as Wal from "./wal.ts"

/** @internal */
export type QueueSource<A> = Array<ReadonlyArray<A>> | Queue.Queue<ReadonlyArray<A>>

/**
 * Spark's `QueueInputDStream`: each batch dequeues one queued batch (`oneAtATime`) or all of
 * them merged; an empty queue gives the default batch (empty unless given).
 * @internal
 */
export class QueueInputNode<A> extends InputNode<A> {
  readonly kind = "QueueInputDStream"
  readonly name = "queueStream"
  private readonly taken = new Map<number, Batch<A>>()

  constructor(
    ctx: NodeContext,
    readonly source: QueueSource<A>,
    readonly oneAtATime: boolean,
    readonly defaultBatch: Batch<A>,
  ) {
    super(ctx)
  }

  private dequeue(): Effect.Effect<Array<Batch<A>>> {
    const source = this.source
    if (Array.isArray(source)) {
      if (source.length === 0) return Effect.succeed([])
      return Effect.succeed(this.oneAtATime ? [source.shift()!] : source.splice(0, source.length))
    }
    const queue = source as Queue.Queue<Batch<A>>
    return this.oneAtATime
      ? Effect.map(Queue.poll(queue), (o) => o._tag === "Some" ? [o.value] : [])
      : Effect.orDie(Queue.clear(queue))
  }

  compute(t: number): Effect.Effect<Batch<A>> {
    return Effect.map(this.dequeue(), (batches) => {
      let batch: Batch<A>
      if (batches.length === 0) batch = this.defaultBatch
      else if (batches.length === 1) batch = batches[0]
      else batch = batches.flat() as Batch<A>
      this.record(t, batch.length)
      return batch
    })
  }
}

/**
 * Spark's `RateLimiter` (Guava's smooth limiter without stored permits): `acquire(n)` lets the
 * caller go now and makes the next caller wait until those `n` records have been paid for at
 * the current rate. A rate of `Infinity` never waits.
 * @internal
 */
export class RateLimiter {
  private nextFree = 0

  constructor(public rate: number) {}

  /** Records one `acquire` may take at once: about 100 ms of the rate. */
  get chunk(): number {
    return Number.isFinite(this.rate) ? Math.max(1, Math.floor(this.rate / 10)) : Infinity
  }

  acquire(n: number): Effect.Effect<void> {
    if (!Number.isFinite(this.rate)) return Effect.void
    return Effect.flatMap(Clock.currentTimeMillis, (now) => {
      const wait = this.nextFree - now
      this.nextFree = Math.max(this.nextFree, now) + n * 1000 / this.rate
      return wait > 0 ? Effect.sleep(Duration.millis(wait)) : Effect.void
    })
  }
}

/** Stores smaller than this are copied record by record into the current block's last part. */
const SMALL_STORE = 64
/** Parts joined per `concat` call (an argument list, so bounded). */
const CONCAT_PARTS = 4096

/** Joins arrays into one with native `concat` (a copy per element, no per-element push). */
const concatAll = <A>(parts: ReadonlyArray<ReadonlyArray<A>>): Array<A> => {
  if (parts.length <= CONCAT_PARTS) return ([] as Array<A>).concat(...parts)
  let out: Array<A> = []
  for (let i = 0; i < parts.length; i += CONCAT_PARTS) out = out.concat(...parts.slice(i, i + CONCAT_PARTS))
  return out
}

/**
 * Lines held as the bytes they came in (runs of complete lines, see `LinesText` in
 * receivers/_lines.ts, decoded by `lines`) with their count, decoded and split only when their
 * batch is computed: until then a receiver holds a few byte views per received chunk, whose
 * bytes live outside the JavaScript heap, instead of a string per line that young collections
 * would copy and promote (socket text streams store lines this way).
 * @internal
 */
export class PackedLines {
  constructor(
    readonly runs: ReadonlyArray<Uint8Array>,
    readonly count: number,
    readonly lines: (runs: ReadonlyArray<Uint8Array>, into?: Array<string>) => Array<string>,
  ) {}
}

/** Part of a block: stored records, or packed lines (only in a stream of strings). */
type Part<A> = ReadonlyArray<A> | PackedLines

/**
 * The records of `parts` as one array: a single stored array is returned as is, packed lines
 * are split (all packed: joined and split once), anything else is joined with one native copy.
 */
const materialise = <A>(parts: ReadonlyArray<Part<A>>): ReadonlyArray<A> => {
  if (parts.length === 0) return []
  let packed = 0
  for (const p of parts) if (p instanceof PackedLines) packed++
  if (packed === 0) {
    return parts.length === 1 ? parts[0] as ReadonlyArray<A> : concatAll(parts as ReadonlyArray<ReadonlyArray<A>>)
  }
  // packed lines only occur in streams of strings: A is string here
  if (packed === parts.length) {
    const first = parts[0] as PackedLines
    const runs = parts.length === 1 ? first.runs : (parts as ReadonlyArray<PackedLines>).flatMap((p) => p.runs)
    return first.lines(runs) as ReadonlyArray<unknown> as ReadonlyArray<A>
  }
  return concatAll(
    parts.map((p) => p instanceof PackedLines ? p.lines(p.runs) as ReadonlyArray<unknown> as ReadonlyArray<A> : p),
  )
}

/**
 * A block of stored records (Spark's `ReceivedBlockInfo`): in memory (as the parts it was
 * stored in, joined only when its batch is computed), spilled to a file, or (with the
 * write-ahead log) read back from its log record.
 * @internal
 */
interface Block<A> {
  readonly id: number
  readonly count: number
  records: ReadonlyArray<Part<A>> | undefined
  file: string | undefined
  /** Where the write-ahead log holds the block. */
  logged: Wal.BlockLocation | undefined
  /** Stored: spilled / logged as needed; only ready blocks are allocated. */
  ready: boolean
}

/** Receiver settings with the defaults applied. @internal */
export interface ResolvedSettings {
  readonly blockMillis: number
  readonly maxRate: number
  readonly backpressure: PIDOptions | undefined
  readonly initialRate: number | undefined
  readonly maxBufferedRecords: number
  readonly storage: StorageLevel
  readonly spillDirectory: string | undefined
  readonly writeAheadLog: boolean
  /** Write-ahead log segment rolling interval. */
  readonly walRollMillis: number
}

/** Spark's `spark.streaming.blockInterval` default. @internal */
export const defaultBlockIntervalMillis = 200
/** Default bound on the records a receiver holds in memory. @internal */
export const defaultMaxBufferedRecords = 1_000_000

/** @internal */
export const resolveSettings = (own: ReceiverSettings, context: ReceiverSettings | undefined): ResolvedSettings => {
  const pick = <K extends keyof ReceiverSettings>(key: K): ReceiverSettings[K] => own[key] ?? context?.[key]
  const blockInterval = pick("blockInterval")
  const blockMillis = blockInterval === undefined
    ? defaultBlockIntervalMillis
    : Time.millis(blockInterval, "Block interval")
  const maxRate = pick("maxRate") ?? Infinity
  const maxBufferedRecords = pick("maxBufferedRecords") ?? defaultMaxBufferedRecords
  const check = (ok: boolean, message: string) => {
    if (!ok) throw new ValidationError({ message })
  }
  check(maxRate > 0, `Receiver maxRate must be positive, got ${maxRate}`)
  check(
    Number.isSafeInteger(maxBufferedRecords) && maxBufferedRecords > 0,
    `Receiver maxBufferedRecords must be a positive integer, got ${maxBufferedRecords}`,
  )
  const initialRate = pick("initialRate")
  check(initialRate === undefined || initialRate > 0, `Receiver initialRate must be positive, got ${initialRate}`)
  const backpressure = pick("backpressure")
  const wal = pick("writeAheadLog")
  const rolling = typeof wal === "object" ? wal.rollingInterval : undefined
  return {
    blockMillis,
    maxRate,
    backpressure: backpressure === true
      ? {}
      : backpressure === false || backpressure === undefined
      ? undefined
      : backpressure,
    initialRate,
    maxBufferedRecords,
    storage: pick("storage") ?? "memory",
    spillDirectory: pick("spillDirectory"),
    writeAheadLog: wal !== undefined && wal !== false,
    walRollMillis: rolling === undefined
      ? Wal.defaultRollMillis
      : Time.millis(rolling, "Write-ahead log rolling interval"),
  }
}

/**
 * A receiver-based input (Spark's `ReceiverInputDStream` with its `BlockGenerator` and
 * `ReceivedBlockTracker`): stored records go into the current block; every block interval
 * (and at each batch time) the current block is sealed; at the tick of batch `t` every sealed
 * block is allocated to `t`, and the allocation is recorded. `store` waits for the rate
 * limiter and, with memory storage, while `maxBufferedRecords` records are held; with
 * memory-and-disk storage, blocks beyond that budget are written to files.
 * @internal
 */
export class ReceiverInputNode<A> extends InputNode<A> {
  readonly kind = "ReceiverInputDStream"
  /**
   * The current block, as copies of the stored arrays and packed lines (joined when the batch
   * is computed: one native copy, or none for a single part); small stores go into `tail`, the
   * last part.
   */
  private current: Array<Part<A>> = []
  private currentCount = 0
  private tail: Array<A> | undefined
  /** Sealed blocks not yet allocated, oldest first. */
  private blocks: Array<Block<A>> = []
  /** Spark's `ReceivedBlockTracker` allocation: the blocks of each batch time. */
  readonly allocations = new Map<number, ReadonlyArray<Block<A>>>()
  /**
   * Batches made only of packed lines, by time, while they are remembered: once such a batch
   * has completed, its array of lines is dropped and a later read (`slice`) decodes them again,
   * so a remembered batch costs its bytes, not a string per line that young collections copy
   * and promote. Only when nothing asked to remember more than one batch (no window reads it
   * again every batch).
   */
  private readonly packedBatches = new Map<number, ReadonlyArray<Part<A>>>()
  private nextBlockId = 0
  /** Records held in memory: the current block, sealed and allocated in-memory blocks. */
  private held = 0
  private space: Deferred.Deferred<void> = Deferred.makeUnsafe()
  private fiber: Fiber.Fiber<void> | undefined
  private stopped = false
  private fs: FileSystem.FileSystem | undefined
  private path: Path.Path | undefined
  private spillDir: string | undefined
  private estimator: RateEstimator.RateEstimator | undefined
  /** The write-ahead log, when enabled (opened at start). */
  wal: Wal.WriteAheadLog | undefined
  /** Batches after the recovered checkpoint whose blocks the log recorded: they get them again. */
  private replayed = new Map<number, Array<Block<A>>>()
  /** The graph checkpoint this input was restored from (set before start). */
  private restoredFrom:
    | { readonly time: number; readonly nextBlockId: number; readonly coverage: Wal.Coverage | undefined }
    | undefined
  /** Write-ahead log: the allocations since the last graph checkpoint (what it does not cover). */
  private allocationLog: Array<{ readonly time: number; readonly ids: ReadonlyArray<number> }> = []
  /** Write-ahead log: what each snapshot taken but not yet written covers, by batch time. */
  private readonly coverages = new Map<number, Wal.Coverage>()
  settings!: ResolvedSettings
  limiter!: RateLimiter
  readonly serializer: Serializer<A>
  /** Peak of `held` since start (tests and `inputInfo` read it). */
  peakHeld = 0
  lastError: { message: string; cause: unknown; time: number } | undefined
  /** Times the supervisor has restarted the receiver (read by the UI and the metrics). */
  restarts = 0

  constructor(ctx: NodeContext, readonly receiver: Receiver<A>) {
    super(ctx)
    this.serializer = receiver.serializer ?? jsonSerializer
    this.settings = resolveSettings(receiver, ctx.receiverSettings)
    this.limiter = new RateLimiter(this.initialRate())
    if (this.settings.writeAheadLog) this.fileSystemUser = `receiver "${receiver.name}" (writeAheadLog)`
    else if (this.settings.storage === "memoryAndDisk") {
      this.fileSystemUser = `receiver "${receiver.name}" (storage "memoryAndDisk")`
    }
  }

  get name(): string {
    return this.receiver.name
  }

  private initialRate(): number {
    const s = this.settings
    return s.backpressure !== undefined && s.initialRate !== undefined ? Math.min(s.initialRate, s.maxRate) : s.maxRate
  }

  /** Records held in memory now. */
  get heldRecords(): number {
    return this.held
  }

  /** Current rate bound in records/s (`Infinity` when unlimited). */
  get rateLimit(): number {
    return this.limiter.rate
  }

  /**
   * Stores records: waits for the rate limiter and for buffer space, in chunks, so one call
   * with many records cannot overrun either.
   */
  storeRecords(records: ReadonlyArray<A>): Effect.Effect<void> {
    if (records.length === 0) return Effect.void
    const s = this.settings
    // fast path: unlimited rate and room in memory, no write-ahead log
    if (
      !s.writeAheadLog && !Number.isFinite(this.limiter.rate) &&
      this.held + records.length <= s.maxBufferedRecords
    ) {
      return Effect.sync(() => this.append(records))
    }
    return Effect.gen({ self: this }, function* () {
      let offset = 0
      while (offset < records.length) {
        const n = Math.min(records.length - offset, this.limiter.chunk, s.maxBufferedRecords)
        const chunk = offset === 0 && n === records.length ? records : records.slice(offset, offset + n)
        offset += n
        yield* this.limiter.acquire(n)
        if (s.storage === "memoryAndDisk" && this.held + n > s.maxBufferedRecords) {
          // over the memory budget: the current block and this chunk go to disk
          yield* this.sealCurrent(true)
          this.held += n
          yield* this.seal([chunk], n, true)
          continue
        }
        while (this.held > 0 && this.held + n > s.maxBufferedRecords) {
          yield* Deferred.await(this.space)
        }
        if (s.writeAheadLog) {
          // a block of its own, stored once the log has it (not via `current`: the block timer
          // could seal that before this call's records are durable)
          this.held += n
          if (this.held > this.peakHeld) this.peakHeld = this.held
          yield* this.seal([chunk], n, false)
          continue
        }
        this.append(chunk)
      }
    })
  }

  /**
   * Stores `count` lines held as one `text` (see {@link PackedLines}): as they are when the
   * fast path applies (unlimited rate, room in memory, no write-ahead log), else split and
   * stored as records (rate limit, spilling and the log see records as ever).
   */
  storePackedLines(lines: PackedLines): Effect.Effect<void> {
    const count = lines.count
    const s = this.settings
    if (
      count > 0 && !s.writeAheadLog && !Number.isFinite(this.limiter.rate) &&
      this.held + count <= s.maxBufferedRecords
    ) {
      return Effect.sync(() => {
        this.current.push(lines)
        this.tail = undefined
        this.currentCount += count
        this.held += count
        if (this.held > this.peakHeld) this.peakHeld = this.held
      })
    }
    return this.storeRecords(lines.lines(lines.runs) as ReadonlyArray<unknown> as ReadonlyArray<A>)
  }

  private append(records: ReadonlyArray<A>): void {
    const n = records.length
    if (n >= SMALL_STORE && Array.isArray(records)) {
      this.current.push(records.slice())
      this.tail = undefined
    } else {
      let tail = this.tail
      if (tail === undefined) {
        tail = []
        this.current.push(tail)
        this.tail = tail
      }
      for (let i = 0; i < n; i++) tail.push(records[i])
    }
    this.currentCount += n
    this.held += n
    if (this.held > this.peakHeld) this.peakHeld = this.held
  }

  private release(n: number): void {
    if (n === 0) return
    this.held -= n
    const space = this.space
    this.space = Deferred.makeUnsafe()
    Deferred.doneUnsafe(space, Exit.void)
  }

  /** Seals the current block (Spark's `BlockGenerator.updateCurrentBuffer`). */
  private sealCurrent(spill: boolean): Effect.Effect<void> {
    if (this.currentCount === 0) return Effect.void
    const parts = this.current
    const count = this.currentCount
    this.current = []
    this.currentCount = 0
    this.tail = undefined
    return this.seal(parts, count, spill)
  }

  /** Makes a block of `parts` (`count` records, already counted in `held`) and stores it. */
  private seal(parts: ReadonlyArray<Part<A>>, count: number, spill: boolean): Effect.Effect<void> {
    const block: Block<A> = {
      id: this.nextBlockId++,
      count,
      records: parts,
      file: undefined,
      logged: undefined,
      ready: false,
    }
    this.blocks.push(block)
    if (this.wal !== undefined) return this.log(block, materialise(parts), spill)
    if (!spill) {
      block.ready = true
      return Effect.void
    }
    return Effect.gen({ self: this }, function* () {
      const dir = yield* this.spillDirectory()
      const file = this.path!.join(dir, `block-${this.streamId}-${block.id}`)
      yield* Effect.orDie(this.fs!.writeFile(file, this.serializer.encode(materialise(parts))))
      block.file = file
      block.records = undefined
      block.ready = true
      this.release(block.count)
    })
  }

  /**
   * Write-ahead log: appends the block and marks it stored once durable. A spilled block is
   * then read back from the log, not kept in memory. A failed write drops the block and dies,
   * so the caller's `store` fails and the supervisor restarts the receiver.
   */
  private log(block: Block<A>, records: ReadonlyArray<A>, spill: boolean): Effect.Effect<void> {
    const wal = this.wal!
    return Effect.suspend(() => wal.appendBlock(block.id, block.count, this.serializer.encode(records))).pipe(
      Effect.uninterruptible, // logged means stored: never leave a logged block out of `blocks`
      Effect.tapCause(() =>
        Effect.sync(() => {
          this.blocks = this.blocks.filter((b) => b !== block)
          block.records = undefined
          this.release(block.count)
        })
      ),
      Effect.orDie,
      Effect.map((location) => {
        block.logged = location
        if (spill) {
          block.records = undefined
          this.release(block.count)
        }
        block.ready = true
      }),
    )
  }

  private spillDirectory(): Effect.Effect<string> {
    if (this.spillDir !== undefined) return Effect.succeed(this.spillDir)
    const fs = this.fs!
    const configured = this.settings.spillDirectory
    const make = configured !== undefined
      ? Effect.as(fs.makeDirectory(configured, { recursive: true }), configured)
      : fs.makeTempDirectory({ prefix: "effect-dstream-spill-" }).pipe(
        Effect.tap((dir) =>
          Effect.sync(() => this.ctx.onStop(() => Effect.ignore(fs.remove(dir, { recursive: true }))))
        ),
      )
    return Effect.orDie(make).pipe(Effect.tap((dir) => Effect.sync(() => (this.spillDir = dir))))
  }

  override hasPending(): boolean {
    return this.currentCount > 0 || this.blocks.length > 0 || this.replayed.size > 0
  }

  override storedRecords(): number {
    let n = this.currentCount
    for (const b of this.blocks) n += b.count
    for (const blocks of this.replayed.values()) for (const b of blocks) n += b.count
    return n
  }

  /** With the write-ahead log, stored blocks are logged before they count: a restart has them. */
  override keepsUnprocessed(): boolean {
    return this.settings.writeAheadLog
  }

  /**
   * At the tick of `t`: seal the current block and allocate every stored block to `t`. With
   * the write-ahead log the allocation is logged first (Spark's `ReceivedBlockTracker`), and a
   * batch re-run after recovery gets the blocks the log recorded for it.
   */
  override allocate(t: number): Effect.Effect<void> {
    return Effect.gen({ self: this }, function* () {
      yield* this.sealCurrent(false)
      let ready: Array<Block<A>> | undefined
      if (this.replayed.size > 0) {
        ready = this.replayed.get(t)
        this.replayed.delete(t)
        // recorded batches that are not re-run (the clock moved past them) give their blocks back
        for (const [time, blocks] of this.replayed) {
          if (time >= t) continue
          this.replayed.delete(time)
          this.blocks = [...blocks, ...this.blocks].sort((x, y) => x.id - y.id)
        }
      }
      if (ready === undefined) {
        ready = this.blocks.filter((b) => b.ready)
        if (this.wal !== undefined && ready.length > 0) {
          const logged = yield* Effect.exit(this.wal.appendAllocation(t, ready))
          if (Exit.isFailure(logged)) {
            // not recorded: the blocks wait for the next batch rather than risk being lost
            yield* Effect.logError(
              `Cannot log the blocks of batch ${Time.format(t)} of receiver ${this.name}`,
              logged.cause,
            )
            ready = []
          }
        }
        const taken = new Set(ready)
        this.blocks = this.blocks.filter((b) => !taken.has(b))
      }
      if (this.wal !== undefined && ready.length > 0) this.allocationLog.push({ time: t, ids: ready.map((b) => b.id) })
      this.allocations.set(t, ready)
      let records = 0
      for (const b of ready) records += b.count
      this.record(t, records, {
        blocks: ready.length,
        spilledBlocks: ready.filter((b) =>
          b.file !== undefined || (b.records === undefined && b.logged !== undefined)
        ).length,
        rateLimit: this.limiter.rate,
      })
    })
  }

  compute(t: number): Effect.Effect<Batch<A>> {
    return Effect.gen({ self: this }, function* () {
      const blocks = this.allocations.get(t) ?? []
      const parts: Array<Part<A>> = []
      for (const block of blocks) {
        if (block.records !== undefined) { for (const part of block.records) parts.push(part) }
        else if (block.file !== undefined) {
          const bytes = yield* Effect.orDie(this.fs!.readFile(block.file))
          parts.push(this.serializer.decode(bytes))
          yield* Effect.ignore(this.fs!.remove(block.file))
        } else if (block.logged !== undefined) {
          const bytes = yield* Effect.orDie(this.wal!.readBlock(block.logged))
          parts.push(this.serializer.decode(bytes))
        }
      }
      this.freeBlocks(t)
      if (
        parts.length > 0 && parts.every((p) => p instanceof PackedLines) && this.rememberMillis! <= this.slideMillis
      ) {
        this.packedBatches.set(t, parts)
      }
      return materialise(parts)
    })
  }

  /** The batch owns its records now: they no longer count against the buffer. */
  private freeBlocks(t: number): void {
    const blocks = this.allocations.get(t)
    if (blocks === undefined) return
    this.allocations.delete(t)
    let inMemory = 0
    for (const b of blocks) {
      if (b.records !== undefined) inMemory += b.count
      b.records = undefined
    }
    this.release(inMemory)
  }

  /**
   * A batch made only of packed lines, part by part (see `Node.batchParts`), when nothing asked
   * to remember more than one batch; `undefined` otherwise (the batch is then computed whole).
   */
  override batchParts(t: number): Effect.Effect<ReadonlyArray<() => Batch<A>> | undefined> {
    return Effect.sync(() => {
      if (!this.isTimeValid(t) || this.generated.has(t) || this.rememberMillis! > this.slideMillis) return undefined
      let parts = this.packedBatches.get(t)
      if (parts === undefined) {
        const blocks = this.allocations.get(t)
        if (blocks === undefined || blocks.length === 0) return undefined
        const gathered: Array<Part<A>> = []
        for (const block of blocks) {
          if (block.records === undefined) return undefined // spilled or logged: computed whole
          for (const part of block.records) {
            if (!(part instanceof PackedLines)) return undefined
            gathered.push(part)
          }
        }
        parts = gathered
        this.packedBatches.set(t, parts)
        this.freeBlocks(t)
      }
      return parts.map((p) => () =>
        (p as PackedLines).lines((p as PackedLines).runs) as ReadonlyArray<unknown> as Batch<A>
      )
    })
  }

  override getOrCompute(t: number): Effect.Effect<Batch<A> | undefined, unknown, NodeEnv> {
    const packed = this.packedBatches.get(t)
    if (packed !== undefined && !this.generated.has(t)) return Effect.sync(() => materialise(packed))
    return super.getOrCompute(t)
  }

  override clearMetadata(t: number): void {
    super.clearMetadata(t)
    // batch `t` has completed: its lines stay as bytes (see `packedBatches`)
    for (const time of this.packedBatches.keys()) if (time <= t) this.generated.delete(time)
    const limit = t - (this.rememberMillis ?? this.slideMillis)
    for (const time of [...this.packedBatches.keys()]) if (time <= limit) this.packedBatches.delete(time)
    for (const time of [...this.allocations.keys()]) if (time <= limit) this.freeBlocks(time)
  }

  /** Feeds the rate estimator (Spark's `RateController.onBatchCompleted`). */
  override batchCompleted(info: BatchInfo): void {
    if (this.estimator === undefined) return
    const input = info.streamIdToInputInfo[this.streamId]
    if (input === undefined || info.processingDelay === undefined || info.schedulingDelay === undefined) return
    const rate = this.estimator.compute(info.batchTime, input.numRecords, info.processingDelay, info.schedulingDelay)
    if (rate !== undefined) this.limiter.rate = Math.min(rate, this.settings.maxRate)
  }

  info(active: boolean): ReceiverInfo {
    return {
      streamId: this.streamId,
      name: this.name,
      active,
      lastErrorMessage: this.lastError?.message,
      lastError: this.lastError?.cause,
      lastErrorTime: this.lastError?.time,
    }
  }

  /** The write-ahead log needs a checkpoint directory. */
  override validateAtStart(): void {
    if (this.settings.writeAheadLog && this.ctx.checkpointDir() === undefined) {
      throw new ValidationError({
        message:
          `Cannot start: receiver "${this.name}" has the write-ahead log enabled, which needs a checkpoint directory; set it with ssc.checkpoint(directory)`,
      })
    }
    super.validateAtStart()
  }

  /**
   * With the write-ahead log, the checkpoint tells recovery which logged batches are processed;
   * after it is written, covered log segments are deleted.
   */
  override checkpointData(): InputCheckpoint | undefined {
    if (!this.settings.writeAheadLog) return undefined
    return {
      key: `ReceiverInputDStream#${this.streamId}`,
      snapshot: (time) => this.walSnapshot(time),
      restore: (data, time) => this.walRestore(data, time),
      written: (time, oldestKept) => this.walCheckpointed(time, oldestKept),
    }
  }

  /**
   * Checkpoint data (write-ahead log only), taken after batch `time`: what the checkpoint
   * covers, exactly — every block id below `nextBlockId` except the `pending` ones (not yet
   * allocated, or allocated to a later batch). Recovery decides by it, not by allocation records
   * (which may be unreadable), so no processed block is counted again.
   */
  walSnapshot(time: number): unknown {
    const pending: Array<number> = []
    for (const b of this.blocks) pending.push(b.id)
    for (const [t, blocks] of this.replayed) if (t > time) { for (const b of blocks) pending.push(b.id) }
    this.allocationLog = this.allocationLog.filter((a) => a.time > time)
    for (const a of this.allocationLog) pending.push(...a.ids)
    const coverage: Wal.Coverage = { time, nextBlockId: this.nextBlockId, pending: toRanges(pending) }
    this.coverages.set(time, coverage)
    return { nextBlockId: coverage.nextBlockId, pending: coverage.pending }
  }

  /** Restores from the graph checkpoint of `time`, before start. */
  walRestore(data: unknown, time: number): void {
    const d = data as { nextBlockId?: unknown; pending?: unknown }
    const nextBlockId = typeof d?.nextBlockId === "number" ? d.nextBlockId : 0
    let coverage: Wal.Coverage | undefined
    if (d?.pending !== undefined) {
      const ranges = d.pending
      if (
        !Array.isArray(ranges) ||
        !ranges.every((r) => Array.isArray(r) && r.length === 2 && r.every((n) => typeof n === "number"))
      ) {
        throw new Error(`write-ahead log coverage "pending" is not a list of [from, to] ranges`)
      }
      coverage = { time, nextBlockId, pending: ranges as Array<readonly [number, number]> }
    }
    this.restoredFrom = { time, nextBlockId, coverage }
  }

  /**
   * After a graph checkpoint of `time` is durable: log the marker (with what it covers), then
   * delete the segments every kept checkpoint covers (`oldestKept`), so falling back to an older
   * one still works.
   */
  walCheckpointed(time: number, oldestKept: number): Effect.Effect<void> {
    const wal = this.wal
    if (wal === undefined) return Effect.void
    const coverage = this.coverages.get(time)
    for (const t of this.coverages.keys()) if (t <= time) this.coverages.delete(t)
    return Effect.andThen(
      coverage === undefined ? Effect.void : wal.appendCheckpointed(coverage),
      wal.cleanup(oldestKept),
    ).pipe(
      Effect.catch((error) =>
        Effect.logWarning(`Write-ahead log cleanup of receiver ${this.name} failed: ${error.message}`)
      ),
    )
  }

  /**
   * Opens the write-ahead log and takes back what it holds (Spark's `ReceivedBlockTracker`
   * recovery). Unreadable ranges of the log are reported (a `WriteAheadLogDamaged` event and a
   * warning each). What the checkpoint restored from covers (or, starting afresh, what the
   * newest checkpoint marker in the log covers) is dropped: with a coverage (this format), by
   * block id, so a block whose allocation record is lost is still known as processed; with an
   * older checkpoint, by the allocation records. Recovering, a batch after it gets its recorded
   * blocks again when it re-runs; the other blocks (never allocated, allocation unreadable, or
   * allocated in a run whose state is not restored) go to the next batch. Blocks a needed
   * allocation names but whose data is unreadable are logged as lost. Replayed blocks stay on
   * disk until their batch runs.
   */
  private openLog(rt: InputRuntime): Effect.Effect<void, never, Scope.Scope | NodeEnv> {
    return Effect.gen({ self: this }, function* () {
      const path = this.path!
      const directory = path.join(this.ctx.checkpointDir()!, "receivedData", String(this.streamId))
      const wal = yield* Effect.orDie(Wal.open(directory, { rollMillis: this.settings.walRollMillis }))
      this.wal = wal
      const contents = wal.recovered
      for (const d of contents.damaged) {
        const segment = path.join(directory, d.segment)
        yield* Effect.logWarning(
          `Write-ahead log of receiver ${this.name}: skipped ${d.bytes} unreadable bytes at offset ${d.offset} of segment "${segment}" (${d.reason})`,
        )
        yield* rt.publish({
          _tag: "WriteAheadLogDamaged",
          damage: {
            streamId: this.streamId,
            receiver: this.name,
            segment,
            offset: d.offset,
            bytes: d.bytes,
            reason: d.reason,
          },
        })
      }
      const restored = this.restoredFrom
      const coverage = restored !== undefined ? restored.coverage : contents.coverage
      const coveredTime = restored?.time ?? contents.checkpointed ?? -Infinity
      const isCovered = (id: number): boolean => {
        if (coverage !== undefined) return id < coverage.nextBlockId && !inRanges(coverage.pending, id)
        const time = contents.allocatedTo.get(id)
        return time !== undefined && time <= coveredTime
      }
      let maxId = Math.max(-1, (coverage?.nextBlockId ?? 0) - 1, (restored?.nextBlockId ?? 0) - 1)
      for (const [_from, to] of coverage?.pending ?? []) maxId = Math.max(maxId, to - 1)
      for (const id of contents.allocatedTo.keys()) maxId = Math.max(maxId, id)
      let replayedRecords = 0
      const pool: Array<Block<A>> = []
      const settled: Array<number> = []
      for (const [id, { count, location }] of contents.blocks) {
        if (id > maxId) maxId = id
        const time = contents.allocatedTo.get(id)
        const allocatedCount = contents.allocatedCounts.get(id)
        if (allocatedCount !== undefined && allocatedCount !== count) {
          yield* Effect.logWarning(
            `Write-ahead log of receiver ${this.name}: the allocation record of block ${id} says ${allocatedCount} records, its block record holds ${count}; using the block record`,
          )
        }
        if (isCovered(id)) {
          if (time === undefined) settled.push(id)
          continue
        }
        const block: Block<A> = { id, count, records: undefined, file: undefined, logged: location, ready: true }
        replayedRecords += count
        if (time !== undefined && restored !== undefined && time > coveredTime) {
          const blocks = this.replayed.get(time)
          if (blocks === undefined) this.replayed.set(time, [block])
          else blocks.push(block)
        } else {
          pool.push(block)
        }
      }
      // covered blocks without a readable allocation record: still deletable by cleanup
      wal.settle(settled, coveredTime)
      const lost = new Map<number, { blocks: number; records: number | undefined }>()
      for (const [id, time] of contents.allocatedTo) {
        if (contents.blocks.has(id) || isCovered(id)) continue
        const entry = lost.get(time) ?? { blocks: 0, records: 0 }
        const count = contents.allocatedCounts.get(id)
        lost.set(time, {
          blocks: entry.blocks + 1,
          records: entry.records === undefined || count === undefined ? undefined : entry.records + count,
        })
      }
      for (const [time, { blocks, records }] of lost) {
        yield* Effect.logError(
          `Write-ahead log of receiver ${this.name}: ${blocks} blocks${
            records === undefined ? "" : ` (${records} records)`
          } of batch ${Time.format(time)} are unreadable; that batch runs without them`,
        )
      }
      this.blocks = pool.sort((x, y) => x.id - y.id)
      this.nextBlockId = Math.max(this.nextBlockId, maxId + 1)
      if (replayedRecords > 0) {
        yield* Effect.logInfo(
          `Receiver ${this.name} replays ${replayedRecords} records from its write-ahead log (${this.replayed.size} recorded batches, ${pool.length} unallocated blocks)`,
        )
      }
    })
  }

  override start(rt: InputRuntime): Effect.Effect<void, never, Scope.Scope | NodeEnv> {
    return Effect.gen({ self: this }, function* () {
      // only a write-ahead log and spilled blocks use them (`fileSystemUser`)
      this.fs = Option.getOrUndefined(yield* Effect.serviceOption(FileSystem.FileSystem))
      this.path = Option.getOrUndefined(yield* Effect.serviceOption(Path.Path))
      const s = this.settings
      if (s.writeAheadLog) yield* this.openLog(rt)
      if (s.backpressure !== undefined) this.estimator = RateEstimator.pid(this.slideMillis, s.backpressure)
      yield* Effect.forkScoped(
        Effect.forever(Effect.andThen(Effect.sleep(Duration.millis(s.blockMillis)), this.sealCurrent(false))),
      )
      this.fiber = yield* Effect.forkScoped(supervise(this, rt))
    })
  }

  override stopReceiving(): Effect.Effect<void> {
    return Effect.suspend(() => {
      this.stopped = true
      return this.fiber ? Fiber.interrupt(this.fiber) : Effect.void
    })
  }

  get isStopped(): boolean {
    return this.stopped
  }
}

/** Sorted, merged `[from, to)` ranges of `ids`. */
const toRanges = (ids: Array<number>): Array<readonly [number, number]> => {
  ids.sort((a, b) => a - b)
  const ranges: Array<[number, number]> = []
  for (const id of ids) {
    const last = ranges[ranges.length - 1]
    if (last !== undefined && id <= last[1]) last[1] = Math.max(last[1], id + 1)
    else ranges.push([id, id + 1])
  }
  return ranges
}

const inRanges = (ranges: ReadonlyArray<readonly [number, number]>, id: number): boolean => {
  for (const [from, to] of ranges) if (id >= from && id < to) return true
  return false
}

/** The packed-lines entry of each store a receiver node made (see {@link packedLinesOf}). */
const packedEntries = new WeakMap<object, (lines: PackedLines) => Effect.Effect<void>>()

/**
 * How a receiver of lines stores `count` complete lines joined by `\n` in one `text` (no final
 * terminator) without splitting them (see {@link PackedLines}); `undefined` for a store that
 * does not come from a receiver node (a wrapper, a test double): split and `store.all` then.
 * @internal
 */
export const packedLinesOf = (store: Store<string>): ((lines: PackedLines) => Effect.Effect<void>) | undefined =>
  packedEntries.get(store)

const makeStore = <A>(node: ReceiverInputNode<A>, rt: InputRuntime, stored: { count: number }): Store<A> => {
  const one = (record: A): Effect.Effect<void> => {
    stored.count++
    return node.storeRecords([record])
  }
  const members = {
    all: (records: ReadonlyArray<A>) => {
      stored.count += records.length
      return node.storeRecords(records)
    },
    reportError: (message: string, cause?: unknown) =>
      Effect.flatMap(Clock.currentTimeMillis, (time) => {
        node.lastError = { message, cause, time }
        return rt.publish({ _tag: "ReceiverError", receiverInfo: node.info(true) })
      }),
    restart: (message: string, cause?: unknown, delay?: Duration.Input) =>
      restartFailure(node.name, message, cause, delay),
    isStopped: Effect.sync(() => node.isStopped),
    streamId: node.streamId,
  }
  // A function's own `name` is read-only: define it rather than assign it.
  Object.defineProperty(one, "name", { value: node.name })
  const store: Store<A> = Object.assign(one as typeof one & { readonly name: string }, members)
  packedEntries.set(store, (lines) => {
    stored.count += lines.count
    return node.storePackedLines(lines)
  })
  return store
}

/**
 * Spark's `ReceiverSupervisor`: runs the receiver's scoped `run`; when it fails or ends,
 * reports a receiver-error event, waits for the restart schedule (or the delay the receiver
 * asked for) and runs it again. The schedule starts afresh after a run that stored records.
 * Ends when interrupted (context stop) or when the schedule is exhausted.
 * @internal
 */
const supervise = <A>(node: ReceiverInputNode<A>, rt: InputRuntime): Effect.Effect<void> =>
  Effect.gen(function* () {
    const schedule = node.receiver.restartSchedule ?? defaultRestartSchedule
    let step = yield* Schedule.toStep(schedule)
    yield* Effect.addFinalizer(() => rt.publish({ _tag: "ReceiverStopped", receiverInfo: node.info(false) }))
    yield* rt.publish({ _tag: "ReceiverStarted", receiverInfo: node.info(true) })
    while (true) {
      const stored = { count: 0 }
      const store = makeStore(node, rt, stored)
      const exit = yield* Effect.exit(Effect.scoped(node.receiver.run(store)))
      if (node.isStopped) return
      if (Exit.hasInterrupts(exit) && !Exit.hasFails(exit) && !Exit.hasDies(exit)) return
      const error = receiverErrorOf(node.name, exit)
      const now = yield* Clock.currentTimeMillis
      node.lastError = { message: error.message, cause: error.cause, time: now }
      yield* rt.publish({ _tag: "ReceiverError", receiverInfo: node.info(true) })
      yield* Effect.logWarning(`Restarting receiver ${node.name}: ${error.message}`)
      if (stored.count > 0) step = yield* Schedule.toStep(schedule)
      const next = yield* Effect.exit(step(now, error))
      if (Exit.isFailure(next)) {
        yield* Effect.logWarning(`Receiver ${node.name} stopped: its restart schedule is exhausted`)
        return
      }
      const delay = error.restartDelayMillis !== undefined ? Duration.millis(error.restartDelayMillis) : next.value[1]
      yield* Effect.sleep(delay)
      node.restarts++
    }
  }).pipe(
    Effect.scoped,
    Effect.tapCause((cause) =>
      Cause.hasInterruptsOnly(cause)
        ? Effect.void
        : Effect.logError(`Supervisor of receiver ${node.name} failed`, cause)
    ),
  )

const receiverErrorOf = (name: string, exit: Exit.Exit<void, unknown>): ReceiverError => {
  if (Exit.isSuccess(exit)) {
    return new ReceiverError({ receiver: name, message: "Receiver stopped on its own; restarting it" })
  }
  const failure = exit.cause.reasons.find((r) => r._tag === "Fail")
  if (failure !== undefined && failure._tag === "Fail") {
    const e = failure.error
    if (e instanceof ReceiverError) return e
    return new ReceiverError({ receiver: name, message: `Receiver failed: ${describeCause(e)}`, cause: e })
  }
  const defect = exit.cause.reasons.find((r) => r._tag === "Die")
  const cause = defect !== undefined && defect._tag === "Die" ? defect.defect : exit.cause
  return new ReceiverError({ receiver: name, message: `Receiver died: ${describeCause(cause)}`, cause })
}
