/** What the benchmarks print about the runtime running them, and a forced GC where available. */
import process from "node:process"

interface RuntimeGlobals {
  readonly Bun?: { readonly version: string; readonly gc?: (force: boolean) => void }
  readonly Deno?: { readonly version: { readonly deno: string } }
  readonly gc?: (force?: boolean) => void
}

const globals = globalThis as unknown as RuntimeGlobals

/** `bun 1.4.5`, `deno 2.9.6` or `node v20…`. */
export const runtimeName: string = globals.Bun !== undefined
  ? `bun ${globals.Bun.version}`
  : globals.Deno !== undefined
  ? `deno ${globals.Deno.version.deno}`
  : `node ${process.version}`

/** A full GC when the runtime exposes one (Bun, or V8 with --expose-gc); otherwise nothing. */
export const collectGarbage = (): void => {
  const gc = globals.gc ?? globals.Bun?.gc
  if (typeof gc === "function") gc(true)
}
