// Browser end-to-end test: the Hydrogen web app (hydrogen-view-sdk 0.3.1) in headless Chromium
// logs in to a mixgate gateway, opens a room, sends a message, and sees a live message that
// another user sends over plain HTTP while the page is open.
//
//   MIXGATE_URL=http://127.0.0.1:8008 node run.mjs
//
// Exits 0 on success, 1 on failure (screenshots and the browser console go to out/).
import { createServer } from "node:http";
import { readFile, mkdir, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { dirname, extname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, "dist");
const out = join(here, "out");
const hs = (process.env.MIXGATE_URL || "").replace(/\/$/, "");
const chromiumPath = process.env.CHROMIUM || "/usr/bin/chromium";
const STEP_MS = 30_000;

function log(...a) {
    console.log(`[browser-test ${new Date().toISOString().slice(11, 23)}]`, ...a);
}

async function api(method, path, token, body) {
    const res = await fetch(hs + path, {
        method,
        headers: {
            "content-type": "application/json",
            ...(token ? { authorization: `Bearer ${token}` } : {}),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    let json;
    try { json = JSON.parse(text); } catch { json = text; }
    return { status: res.status, body: json };
}

async function ok(method, path, token, body) {
    const r = await api(method, path, token, body);
    if (r.status < 200 || r.status >= 300) {
        throw new Error(`${method} ${path} -> ${r.status} ${JSON.stringify(r.body)}`);
    }
    return r.body;
}

async function register(username, password) {
    const path = "/_matrix/client/v3/register";
    const first = await api("POST", path, null, { username, password });
    if (first.status !== 401) throw new Error(`register: expected 401, got ${first.status} ${JSON.stringify(first.body)}`);
    return ok("POST", path, null, {
        username, password, auth: { type: "m.login.dummy", session: first.body.session },
    });
}

const types = {
    ".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".wasm": "application/wasm",
    ".svg": "image/svg+xml", ".woff": "font/woff", ".woff2": "font/woff2", ".json": "application/json",
};

function serve() {
    const server = createServer(async (req, res) => {
        const url = new URL(req.url, "http://x");
        if (url.pathname === "/config.js") {
            res.writeHead(200, { "content-type": "text/javascript" });
            res.end(`window.MIXGATE_HOMESERVER = ${JSON.stringify(hs)};`);
            return;
        }
        const rel = url.pathname === "/" ? "index.html" : url.pathname.slice(1);
        const file = normalize(join(dist, rel));
        if (!file.startsWith(dist) || !existsSync(file)) {
            res.writeHead(404);
            res.end("not found");
            return;
        }
        res.writeHead(200, { "content-type": types[extname(file)] || "application/octet-stream" });
        res.end(await readFile(file));
    });
    return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

async function main() {
    if (!hs) throw new Error("set MIXGATE_URL to the gateway's base URL");
    if (!existsSync(join(dist, "app.js"))) throw new Error("run `node build.mjs` first");
    await mkdir(out, { recursive: true });

    const suffix = Math.random().toString(36).slice(2, 8);
    const alice = await register(`alice${suffix}`, "alice-password");
    const bob = await register(`bob${suffix}`, "bob-password");
    const roomId = (await ok("POST", "/_matrix/client/v3/createRoom", bob.access_token, {
        name: "Browser room", preset: "public_chat",
    })).room_id;
    await ok("POST", `/_matrix/client/v3/join/${encodeURIComponent(roomId)}`, alice.access_token, {});
    await ok("PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/before`,
        bob.access_token, { msgtype: "m.text", body: "hello before login" });
    log(`users ${alice.user_id}, ${bob.user_id}; room ${roomId}`);

    const server = await serve();
    const appUrl = `http://127.0.0.1:${server.address().port}/`;
    const browser = await chromium.launch({
        executablePath: chromiumPath,
        headless: true,
        args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    });
    const consoleLines = [];
    let page;
    try {
        const context = await browser.newContext({ viewport: { width: 1100, height: 800 } });
        page = await context.newPage();
        page.setDefaultTimeout(STEP_MS);
        page.on("console", (m) => consoleLines.push(`[${m.type()}] ${m.text()}`));
        page.on("pageerror", (e) => consoleLines.push(`[pageerror] ${e.stack || e}`));
        page.on("requestfailed", (r) => consoleLines.push(`[requestfailed] ${r.method()} ${r.url()} ${r.failure()?.errorText}`));
        page.on("response", (r) => {
            if (r.status() >= 400) consoleLines.push(`[http ${r.status()}] ${r.request().method()} ${r.url()}`);
        });

        log(`opening ${appUrl}`);
        await page.goto(appUrl);
        // Login screen: homeserver, then username and password.
        const homeserver = page.locator("#homeserver");
        await homeserver.waitFor();
        await homeserver.fill(hs);
        await homeserver.press("Tab");
        await page.locator("#username").waitFor();
        await page.locator("#username").fill(alice.user_id.slice(1).split(":")[0]);
        await page.locator("#password").fill("alice-password");
        await page.getByRole("button", { name: "Log In" }).click();
        log("logged in; waiting for the room list");

        await page.locator(".RoomList").getByText("Browser room").first().click({ timeout: 60_000 });
        log("room opened");
        await page.locator(".Timeline").getByText("hello before login").first().waitFor();

        // Send from the browser.
        const composer = page.locator(".MessageComposer_input textarea, .MessageComposer_input input").first();
        await composer.click();
        await composer.fill("hello from hydrogen");
        await composer.press("Enter");
        await page.locator(".Timeline").getByText("hello from hydrogen").first().waitFor();
        // The gateway really has it: Bob reads it back over HTTP.
        const deadline = Date.now() + STEP_MS;
        for (;;) {
            const page2 = await ok("GET",
                `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/messages?dir=b&limit=20`, bob.access_token);
            const found = page2.chunk.some((e) => e.content?.body === "hello from hydrogen" && e.sender === alice.user_id);
            if (found) break;
            if (Date.now() > deadline) throw new Error("the browser's message never reached the gateway");
            await new Promise((r) => setTimeout(r, 250));
        }
        log("browser message stored on the gateway");

        // A live message from Bob shows up without reloading (long-polling /sync).
        await ok("PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/live`,
            bob.access_token, { msgtype: "m.text", body: "live message from bob" });
        await page.locator(".Timeline").getByText("live message from bob").first().waitFor();
        log("live message seen in the browser");
        await page.screenshot({ path: join(out, "success.png") });
    } catch (e) {
        if (page) await page.screenshot({ path: join(out, "failure.png") }).catch(() => {});
        await writeFile(join(out, "console.log"), consoleLines.join("\n"));
        console.error(consoleLines.slice(-60).join("\n"));
        throw e;
    } finally {
        await writeFile(join(out, "console.log"), consoleLines.join("\n")).catch(() => {});
        await browser.close();
        server.close();
    }
}

const timer = setTimeout(() => {
    console.error("browser test: overall timeout (180 s)");
    process.exit(1);
}, 180_000);
main().then(() => {
    clearTimeout(timer);
    log("PASS");
    process.exit(0);
}, (e) => {
    clearTimeout(timer);
    console.error("browser test FAILED:", e && e.stack || e);
    process.exit(1);
});
