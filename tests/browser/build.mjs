// Bundles src/app.js with hydrogen-view-sdk into dist/ and copies the assets Hydrogen loads at
// run time (Olm, the worker, the download sandbox, the theme and its fonts and icons).
import { build } from "esbuild";
import { cpSync, mkdirSync, rmSync, readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, "dist");
rmSync(dist, { recursive: true, force: true });
mkdirSync(dist, { recursive: true });

await build({
    entryPoints: [join(here, "src/app.js")],
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2020",
    outfile: join(dist, "app.js"),
    // Emscripten's Olm build has Node-only branches that never run in a browser.
    external: ["fs", "path", "crypto"],
    logLevel: "warning",
});

const assets = join(here, "node_modules/hydrogen-view-sdk/asset-build/assets");
for (const f of readdirSync(assets)) {
    cpSync(join(assets, f), join(dist, f));
}
const olm = join(here, "node_modules/@matrix-org/olm");
for (const f of ["olm.js", "olm.wasm", "olm_legacy.js"]) {
    cpSync(join(olm, f), join(dist, f));
}
cpSync(join(here, "node_modules/hydrogen-view-sdk/lib-build/sw.js"), join(dist, "sw.js"));
cpSync(join(here, "src/index.html"), join(dist, "index.html"));
console.log(`built ${dist}`);
