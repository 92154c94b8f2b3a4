// Builds the action component: componentizes fetch_probe.js (beside this file) against the
// repository's WIT package, world `action`.
//
//   node build.mjs [--wit <dir>] [--out <file.wasm>]
//
// Defaults: --wit ../../../wit (the repository's), --out ./fetch_probe.wasm.
import { componentize } from "@bytecodealliance/componentize-js";
import { writeFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { resolve } from "node:path";
import { parseArgs } from "node:util";

const here = fileURLToPath(new URL(".", import.meta.url));
const { values } = parseArgs({
  options: {
    wit: { type: "string", default: resolve(here, "../../../wit") },
    out: { type: "string", default: resolve(here, "fetch_probe.wasm") },
  },
});
const started = Date.now();
const { component } = await componentize({
  sourcePath: resolve(here, "fetch_probe.js"),
  witPath: resolve(values.wit),
  worldName: "action",
  // `fetch` needs the `http` feature (wasi:http/outgoing-handler). `fetch-event` would serve
  // wasi:http/incoming-handler, which an action does not export.
  disableFeatures: ["fetch-event"],
});
await writeFile(resolve(values.out), component);
console.log(`${resolve(values.out)}: ${component.length} bytes in ${Date.now() - started} ms`);
