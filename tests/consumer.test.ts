/**
 * The npm package as a user gets it: build and `npm pack` the library, install the tarball into a
 * scratch project (offline: the peer dependencies are copied from our node_modules, the tarball
 * is installed by npm from disk), type-check the project with tsc under `strict`,
 * `noUncheckedIndexedAccess` and `exactOptionalPropertyTypes`, then run a word count that imports
 * `effect-dstream` and `effect-dstream/testing` on Node, Bun and Deno.
 *
 * scripts/test.sh runs this file once, on Node (`node --test`); it also runs unchanged under
 * `deno test -A` and `bun test`.
 */
import assert from "node:assert/strict"
import { execFile } from "node:child_process"
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { after, before, describe, it } from "node:test"

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..")
const bin = (name: string) => join(root, "node_modules", ".bin", name)

interface Ran {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

/** Runs a command with node_modules/.bin first on PATH (so `node` is the Node 22 from npm ci). */
const run = (command: string, args: ReadonlyArray<string>, cwd: string): Promise<Ran> =>
  new Promise((done) => {
    const env = {
      ...process.env,
      PATH: `${join(root, "node_modules", ".bin")}:${process.env.PATH ?? ""}`,
      NO_COLOR: "1",
    }
    execFile(command, args, { cwd, env, maxBuffer: 64 * 1024 * 1024, timeout: 120_000 }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === "number" ? error.code : 1
      done({ code, stdout, stderr })
    })
  })

const ok = async (command: string, args: ReadonlyArray<string>, cwd: string): Promise<string> => {
  const ran = await run(command, args, cwd)
  assert.equal(ran.code, 0, `${command} ${args.join(" ")} failed:\n${ran.stdout}\n${ran.stderr}`)
  return ran.stdout
}

interface LockEntry {
  readonly version?: string
  readonly dependencies?: Record<string, string>
}

/** The packages `names` need at run time, per our package-lock.json (dependencies, not peers). */
const closure = (names: ReadonlyArray<string>): Array<string> => {
  const lock = JSON.parse(readFileSync(join(root, "package-lock.json"), "utf8")) as {
    packages: Record<string, LockEntry>
  }
  const seen = new Set<string>()
  const visit = (name: string) => {
    if (seen.has(name)) return
    const entry = lock.packages[`node_modules/${name}`]
    assert.ok(entry !== undefined, `Package not in package-lock.json: "${name}"`)
    seen.add(name)
    for (const dep of Object.keys(entry.dependencies ?? {})) visit(dep)
  }
  names.forEach(visit)
  return [...seen].sort()
}

const versionOf = (name: string): string =>
  (JSON.parse(readFileSync(join(root, "node_modules", name, "package.json"), "utf8")) as { version: string }).version

// The consumer's program: a word count over two input batches, through both entry points.
const program = `import { Effect } from "effect"
import { DStream, ValidationError } from "effect-dstream"
import { runOperation } from "effect-dstream/testing"

const batches: ReadonlyArray<ReadonlyArray<string>> = [["to be or not to be"], ["to do", "or not"]]

const counts = (lines: DStream.DStream<string>) =>
  lines
    .pipe(DStream.flatMap((line: string) => line.split(" ")))
    .mapToPair((word) => [word, 1])
    .reduceByKey((a, b) => a + b)

// Keyed operators only compile on key-value streams, also through the published .d.ts.
// @ts-expect-error reduceByKey needs a DStream<readonly [K, V]>
const notPairs = (lines: DStream.DStream<string>) => lines.reduceByKey((a: number, b: number) => a + b)
void notPairs

const out = await Effect.runPromise(runOperation(batches, counts))
const first = out[0] // noUncheckedIndexedAccess: possibly undefined
if (first === undefined) throw new ValidationError({ message: "No first batch" })
for (const [k, batch] of out.entries()) {
  const line = [...batch].sort(([a], [b]) => a.localeCompare(b)).map(([w, n]) => w + "=" + n).join(" ")
  console.log("batch " + (k + 1) + ": " + line)
}
`

const expected = "batch 1: be=2 not=1 or=1 to=2\nbatch 2: do=1 not=1 or=1 to=1\n"

describe("npm package consumer", { timeout: 300_000 }, () => {
  let scratch = ""
  let tarball = ""

  before(async () => {
    scratch = mkdtempSync(join(tmpdir(), "effect-dstream-consumer-"))
    // `npm pack` runs the `prepack` script: a fresh `npm run build` into dist/.
    const packed = JSON.parse(await ok("npm", ["pack", "--json", "--pack-destination", scratch], root)) as Array<{
      filename: string
      files: Array<{ path: string }>
    }>
    const entry = packed[0]
    assert.ok(entry !== undefined)
    tarball = join(scratch, entry.filename)
    const files = entry.files.map((f) => f.path)
    assert.ok(files.includes("dist/mod.js") && files.includes("dist/mod.d.ts"), files.join(", "))
    assert.ok(files.includes("dist/lib/Testing.js") && files.includes("LICENSE"), files.join(", "))
    // compiled modules and their declarations, the Streaming page's own files, license, readme, manifest
    assert.deepEqual(
      files.filter((f) =>
        !/^(dist\/.*\.(js|d\.ts)|dist\/lib\/_internal\/ui\/assets\/[\w.]+|LICENSE|README\.md|package\.json)$/.test(f)
      ),
      [],
    )
    assert.ok(files.includes("dist/lib/_internal/ui/assets/index.html"), files.join(", "))

    // Peer dependencies (and kafkajs, our one dependency) come from our node_modules: no network.
    const app = join(scratch, "app")
    const peers = ["effect", "@effect/platform-node", "kafkajs", "uplot", "@types/node"]
    for (const name of closure(peers)) {
      cpSync(join(root, "node_modules", name), join(app, "node_modules", name), { recursive: true })
    }
    writeFileSync(
      join(app, "package.json"),
      JSON.stringify(
        {
          name: "consumer",
          private: true,
          type: "module",
          dependencies: {
            "effect-dstream": `file:${tarball}`,
            ...Object.fromEntries(peers.map((name) => [name, versionOf(name)])),
          },
        },
        null,
        2,
      ),
    )
    // --legacy-peer-deps: npm would otherwise fetch the registry's metadata to resolve the
    // peers; they are already in node_modules and the test checks them below.
    await ok("npm", ["install", "--offline", "--legacy-peer-deps", "--no-audit", "--no-fund"], app)
    writeFileSync(join(app, "main.ts"), program)
    writeFileSync(
      join(app, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: {
          target: "ES2022",
          module: "nodenext",
          moduleResolution: "nodenext",
          strict: true,
          noUncheckedIndexedAccess: true,
          exactOptionalPropertyTypes: true,
          noEmit: true,
          types: ["node"],
        },
        files: ["main.ts"],
      }),
    )
  })

  after(() => {
    if (scratch !== "") rmSync(scratch, { recursive: true, force: true })
  })

  const app = () => join(scratch, "app")

  it("the tarball installs with one copy of effect, shared with the project's", () => {
    const installed = JSON.parse(readFileSync(join(app(), "node_modules", "effect-dstream", "package.json"), "utf8"))
    assert.equal(installed.private, undefined)
    assert.equal(installed.peerDependencies.effect, "^4.1.0")
    assert.equal(installed.peerDependencies["@effect/platform-node"], "^4.1.0")
    assert.equal(installed.dependencies.effect, undefined)
    assert.equal(installed.dependencies.kafkajs, "^2.2.4")
    assert.equal(existsSync(join(app(), "node_modules", "effect-dstream", "node_modules")), false)
    assert.equal(existsSync(join(app(), "node_modules", "effect-dstream", "dist", "mod.d.ts")), true)
  })

  it("type-checks with tsc under strict, noUncheckedIndexedAccess and exactOptionalPropertyTypes", async () => {
    const ran = await run(bin("tsc"), ["-p", "tsconfig.json"], app())
    assert.equal(ran.code, 0, ran.stdout + ran.stderr)
    // The check can fail: an error in the consumer's code is reported.
    writeFileSync(
      join(app(), "bad.ts"),
      `import { DStream } from "effect-dstream"\nexport const n: number = DStream.map\n`,
    )
    const badConfig = { extends: "./tsconfig.json", compilerOptions: { skipLibCheck: true }, files: ["bad.ts"] }
    writeFileSync(join(app(), "tsconfig.bad.json"), JSON.stringify(badConfig))
    const bad = await run(bin("tsc"), ["-p", "tsconfig.bad.json"], app())
    assert.notEqual(bad.code, 0)
    assert.match(bad.stdout, /bad\.ts.*error TS2322/)
  })

  for (
    const [runtime, args] of [
      ["Node", [bin("node"), "main.ts"]],
      ["Bun", [bin("bun"), "main.ts"]],
      ["Deno", [bin("deno"), "run", "--check", "-A", "main.ts"]], // Deno also type-checks it
    ] as const
  ) {
    it(`runs the word count on ${runtime}`, async () => {
      const [command, ...rest] = args
      const ran = await run(command, rest, app())
      assert.equal(ran.code, 0, ran.stderr)
      assert.equal(ran.stdout, expected, ran.stderr)
    })
  }

  it("node_modules/.bin/node (from npm ci) is Node 22 or newer", async () => {
    const version = (await ok(bin("node"), ["--version"], root)).trim()
    const major = Number(/^v(\d+)\./.exec(version)?.[1])
    assert.ok(major >= 22, `node_modules/.bin/node is ${version}, want >= 22`)
  })
})
