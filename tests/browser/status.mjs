// The status page of a metrics listener in headless Chromium: load it, count its charts and
// lines, collect script errors, console errors and any request that leaves the page's origin,
// and save a full-page screenshot.
//
//   STATUS_URL=http://127.0.0.1:9100/ SHOT=out/status.png node status.mjs
//
// Prints one JSON line; exits 1 on a load failure.
import { chromium } from "playwright-core";

const url = process.env.STATUS_URL;
const shot = process.env.SHOT || "out/status.png";
const chromiumPath = process.env.CHROMIUM || "/usr/bin/chromium";
const origin = new URL(url).origin;

const browser = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
    const page = await browser.newPage({ viewport: { width: 800, height: 900 } });
    const errors = [];
    page.on("pageerror", (e) => errors.push(`pageerror: ${e}`));
    page.on("console", (m) => { if (m.type() === "error") errors.push(`console: ${m.text()}`); });
    page.on("request", (r) => { if (!r.url().startsWith(origin)) errors.push(`external request: ${r.url()}`); });
    const res = await page.goto(url, { waitUntil: "load" });
    const body = await res.body();
    const charts = await page.locator("svg.chart").count();
    const polylines = await page.locator("svg.chart polyline").count();
    const tables = await page.locator("table").count();
    const samples = Number(await page.locator("body").getAttribute("data-samples"));
    await page.screenshot({ path: shot, fullPage: true });
    console.log(JSON.stringify({ status: res.status(), bytes: body.length, charts, polylines, tables, samples, errors }));
} catch (e) {
    console.error(String(e));
    process.exitCode = 1;
} finally {
    await browser.close();
}
