// The library must run on edge runtimes, which have the web platform
// (Request, Response, fetch, crypto.subtle, btoa/atob) and not Node's APIs.
import { test } from "node:test";
import * as assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

test("the library's sources use web APIs only, no Node built-ins", () => {
  const dir = join(process.cwd(), "src");
  const files = readdirSync(dir).filter((f) => f.endsWith(".ts"));
  assert.ok(files.length >= 5);
  for (const file of files) {
    // Code only: comments may name what the code avoids.
    const source = readFileSync(join(dir, file), "utf8")
      .replace(/\/\*[\s\S]*?\*\//g, "")
      .replace(/^\s*\/\/.*$/gm, "");
    for (const node of [/from ["']node:/, /require\(/, /\bBuffer\b/, /\bprocess\./, /from ["'](fs|path|crypto|http|https)["']/]) {
      assert.doesNotMatch(source, node, `${file} uses ${node}`);
    }
  }
});
