/**
 * Streaming listener events (Spark's `StreamingListener`): published by the running context
 * and readable as an Effect `Stream` (`ssc.events`) or through a callback
 * (`ssc.addStreamingListener`). Batch events carry Spark's `BatchInfo` figures.
 *
 * @module
 */

/**
 * Records one input stream contributed to a batch (Spark's `StreamInputInfo`).
 *
 * @since 0.1.0
 * @category models
 */
export interface StreamInputInfo {
  /** The input stream's id. */
  readonly streamId: number
  /** The input stream's name, e.g. `socket localhost:9999`. */
  readonly name: string
  /** Records this input contributed to the batch. */
  readonly numRecords: number
  /** Input-specific facts, e.g. the files read or the Kafka offset ranges. */
  readonly metadata?: Record<string, unknown> | undefined
}

/**
 * One output operation's run within a batch (Spark's `OutputOperationInfo`).
 *
 * @since 0.1.0
 * @category models
 */
export interface OutputOperationInfo {
  /** Batch time in epoch milliseconds. */
  readonly batchTime: number
  /** Registration index of the output operation. */
  readonly id: number
  /** `print`, `foreachBatch`, `saveAsTextFiles`, `toStream`, … */
  readonly name: string
  /** When the operation started, in epoch milliseconds, once it has. */
  readonly startTime: number | undefined
  /** When the operation ended, in epoch milliseconds, once it has. */
  readonly endTime: number | undefined
  /** Why the operation failed, if it did. */
  readonly failureReason: string | undefined
}

/**
 * A batch's timing and size (Spark's `BatchInfo`). Delays are in milliseconds.
 *
 * @since 0.1.0
 * @category models
 */
export interface BatchInfo {
  /** Batch time in epoch milliseconds. */
  readonly batchTime: number
  /** What each input stream contributed, by stream id. */
  readonly streamIdToInputInfo: Readonly<Record<number, StreamInputInfo>>
  /**
   * When the batch was queued: its batch time when the clock cut it late (the job fiber was
   * busy), so `schedulingDelay` shows the whole lag behind the batch time.
   */
  readonly submissionTime: number
  /** When the batch's first job started, once it has. */
  readonly processingStartTime: number | undefined
  /** When the batch's last job ended, once it has. */
  readonly processingEndTime: number | undefined
  /** The batch's output operations, in registration order. */
  readonly outputOperationInfos: ReadonlyArray<OutputOperationInfo>
  /** `processingStartTime − submissionTime`. */
  readonly schedulingDelay: number | undefined
  /** `processingEndTime − processingStartTime`. */
  readonly processingDelay: number | undefined
  /** `schedulingDelay + processingDelay`. */
  readonly totalDelay: number | undefined
  /** Records of all inputs in this batch. */
  readonly numRecords: number
  /**
   * Set when an output operation of the batch failed and the failure policy skipped it (the
   * batch still counts as done): the first failed output's reason.
   */
  readonly failureReason?: string | undefined
}

/**
 * What a receiver looks like in events (Spark's `ReceiverInfo`).
 *
 * @since 0.1.0
 * @category models
 */
export interface ReceiverInfo {
  /** The receiver's input stream id. */
  readonly streamId: number
  /** The receiver's name, e.g. `socket localhost:9999`. */
  readonly name: string
  /** `true` while the receiver runs. */
  readonly active: boolean
  /** The message of the receiver's last error, if any. */
  readonly lastErrorMessage: string | undefined
  /** The receiver's last error, if any. */
  readonly lastError: unknown
  /** When the last error happened, in epoch milliseconds, if any. */
  readonly lastErrorTime: number | undefined
}

/**
 * A byte range of a receiver's write-ahead log that could not be read when the context started
 * (a torn last record after a crash, or corruption): the records in it are skipped, the reading
 * resumes at the next valid record.
 *
 * @since 0.1.0
 * @category models
 */
export interface WriteAheadLogDamage {
  /** The receiver's input stream id. */
  readonly streamId: number
  /** The receiver's name. */
  readonly receiver: string
  /** The segment file's path. */
  readonly segment: string
  /** Where the unreadable range starts in the segment. */
  readonly offset: number
  /** Its length. */
  readonly bytes: number
  /** Why it could not be read, e.g. `checksum mismatch`, `truncated record`. */
  readonly reason: string
}

/**
 * One batch of one event-time window operator (`EventTime.window` and friends), as Structured
 * Streaming reports its watermark and `numRowsDroppedByWatermark` in each query progress.
 *
 * @since 0.1.0
 * @category models
 */
export interface EventTimeOperatorProgress {
  /** Batch time in epoch milliseconds. */
  readonly batchTime: number
  /** The operator's name (its `name` option, else its kind and stream id). */
  readonly operator: string
  /** The watermark in effect for the batch (epoch ms), `undefined` before the first record. */
  readonly watermark: number | undefined
  /** Records dropped as late in this batch (their window ended at or below the watermark). */
  readonly lateRecords: number
  /** Windows (key × window) the operator emitted in this batch. */
  readonly emitted: number
  /** Windows (key × window) held in state after the batch. */
  readonly openWindows: number
}

/**
 * Every event the context publishes.
 *
 * @since 0.1.0
 * @category models
 */
export type StreamingEvent =
  | { readonly _tag: "StreamingStarted"; readonly time: number }
  | { readonly _tag: "ReceiverStarted"; readonly receiverInfo: ReceiverInfo }
  | { readonly _tag: "ReceiverError"; readonly receiverInfo: ReceiverInfo }
  | { readonly _tag: "ReceiverStopped"; readonly receiverInfo: ReceiverInfo }
  | { readonly _tag: "WriteAheadLogDamaged"; readonly damage: WriteAheadLogDamage }
  | { readonly _tag: "BatchSubmitted"; readonly batchInfo: BatchInfo }
  | { readonly _tag: "BatchStarted"; readonly batchInfo: BatchInfo }
  | { readonly _tag: "BatchCompleted"; readonly batchInfo: BatchInfo }
  | { readonly _tag: "OutputOperationStarted"; readonly outputOperationInfo: OutputOperationInfo }
  | { readonly _tag: "OutputOperationCompleted"; readonly outputOperationInfo: OutputOperationInfo }
  | { readonly _tag: "StreamingStopped"; readonly time: number }
  | {
    /**
     * An event-time window operator's figures for a batch (published once per operator that
     * ran, after the batch's outputs and before its `BatchCompleted`).
     */
    readonly _tag: "EventTimeProgress"
    readonly progress: EventTimeOperatorProgress
  }
  | {
    /**
     * A scale-out stream's state shards (lib/KafkaScale.ts): `assigned` after every assignment
     * (the partitions and shards this process owns, with their sizes), `restoring` about once a
     * second during a shard's restore (records read, records/s, records remaining), `restored`
     * when it is done.
     */
    readonly _tag: "KafkaShards"
    /** `standby`: the standby shards changed (one started, or was taken over or dropped). */
    readonly kind: "assigned" | "restoring" | "restored" | "standby"
    readonly stream: string
    /** Owned partitions (`assigned`). */
    readonly partitions: ReadonlyArray<{ readonly topic: string; readonly partition: number }>
    /** Owned shards: stage, partition, keys (`assigned`, `restored`). */
    readonly shards: ReadonlyArray<{ readonly stage: string; readonly partition: number; readonly keys: number }>
    /** Standby shards (changelog partitions tailed without owning them): keys, offset read, records behind. */
    readonly standbys?:
      | ReadonlyArray<
        {
          readonly stage: string
          readonly partition: number
          readonly keys: number
          readonly offset: number
          readonly lag: number
        }
      >
      | undefined
    /** The shard being restored (`restoring`, `restored`). */
    readonly restore?: {
      readonly stage: string
      readonly partition: number
      readonly records: number
      readonly recordsPerSecond: number
      readonly remaining: number
    } | undefined
  }
  | {
    /**
     * The scheduling delay has grown for `batches` consecutive batches (the context's
     * `schedulingDelayWarning`, default 10): batches take longer than the batch interval and the
     * job falls further behind. Published again every `batches` more batches while it grows.
     */
    readonly _tag: "SchedulingDelayGrowing"
    readonly batchTime: number
    /** The batch's scheduling delay in milliseconds. */
    readonly schedulingDelay: number
    /** Consecutive batches whose scheduling delay grew. */
    readonly batches: number
  }

/**
 * Builds a `BatchInfo`, deriving the delays and the record count.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeBatchInfo = (fields: {
  readonly batchTime: number
  readonly streamIdToInputInfo: Readonly<Record<number, StreamInputInfo>>
  readonly submissionTime: number
  readonly processingStartTime?: number | undefined
  readonly processingEndTime?: number | undefined
  readonly outputOperationInfos?: ReadonlyArray<OutputOperationInfo> | undefined
}): BatchInfo => {
  const schedulingDelay = fields.processingStartTime === undefined
    ? undefined
    : fields.processingStartTime - fields.submissionTime
  const processingDelay = fields.processingStartTime === undefined || fields.processingEndTime === undefined
    ? undefined
    : fields.processingEndTime - fields.processingStartTime
  let numRecords = 0
  for (const info of Object.values(fields.streamIdToInputInfo)) numRecords += info.numRecords
  const failed = fields.outputOperationInfos?.find((o) => o.failureReason !== undefined)
  return {
    batchTime: fields.batchTime,
    streamIdToInputInfo: fields.streamIdToInputInfo,
    submissionTime: fields.submissionTime,
    processingStartTime: fields.processingStartTime,
    processingEndTime: fields.processingEndTime,
    outputOperationInfos: fields.outputOperationInfos ?? [],
    schedulingDelay,
    processingDelay,
    totalDelay: schedulingDelay === undefined || processingDelay === undefined
      ? undefined
      : schedulingDelay + processingDelay,
    numRecords,
    failureReason: failed === undefined
      ? undefined
      : `Output operation ${failed.id} ("${failed.name}") failed: ${failed.failureReason}`,
  }
}

/**
 * One concise line per completed batch, for `logProgress`.
 *
 * @since 0.1.0
 * @category formatting
 */
export const formatProgress = (info: BatchInfo): string =>
  `Batch ${info.batchTime} ms: ${info.numRecords} records, scheduling delay ${info.schedulingDelay ?? "-"} ms, ` +
  `processing ${info.processingDelay ?? "-"} ms, total delay ${info.totalDelay ?? "-"} ms` +
  (info.failureReason === undefined ? "" : `; skipped after a failure: ${info.failureReason}`)
