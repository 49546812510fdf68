// The Hydrogen web app, assembled from hydrogen-view-sdk 0.3.1 the same way Hydrogen's own
// `main.js` does it: Platform + navigation + URL router + RootViewModel + RootView. The package
// ships the library (lib-build/) and its assets (asset-build/assets/), not a ready index.html,
// so this file and index.html stand in for Hydrogen's app shell.
import {
    Platform,
    FeatureSet,
    createNavigation,
    createRouter,
    RootViewModel,
} from "hydrogen-view-sdk";

async function main() {
    const container = document.getElementById("app");
    const config = {
        defaultHomeServer: window.MIXGATE_HOMESERVER || "http://127.0.0.1:8008",
    };
    const platform = new Platform({
        container,
        assetPaths: {
            downloadSandbox: "download-sandbox.html",
            worker: "main.js",
            olm: { wasm: "olm.wasm", legacyBundle: "olm_legacy.js", wasmBundle: "olm.js" },
            // Hydrogen 0.3 needs its service worker (it adds the access token to authenticated
            // media requests; without it, session loading fails).
            serviceWorker: "sw.js",
        },
        config,
        options: { development: true },
    });
    const navigation = createNavigation();
    platform.setNavigation(navigation);
    await platform.init();
    const urlRouter = createRouter({ navigation, history: platform.history });
    urlRouter.attach();
    const features = await FeatureSet.load(platform.settingsStorage);
    const vm = new RootViewModel({ platform, navigation, urlRouter, features });
    await vm.load();
    platform.createAndMountRootView(vm);
    window.hydrogenReady = true;
}

main().catch((e) => {
    console.error("hydrogen failed to start", e);
    window.hydrogenError = String(e && e.stack || e);
});
