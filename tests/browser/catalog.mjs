// The catalog in a real browser: Debian's chromium driven headless by playwright-core.
//
//   node tests/browser/catalog.mjs URL TOKEN OUTDIR
//
// URL: a `kye serve` of the Pokémon example with stored records, one reject (haunter, 93) and
// drift; TOKEN: a token whose role reads, fetches and backfills every model; the env var
// KYE_LIMITED_TOKEN: a token whose role does not read PokemonType. Screenshots of the main
// pages are written to OUTDIR and checked non-blank. Exits 1 with the failures listed.
// tests/example/catalog.rs starts the server and runs this.

import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

const [base, token, outdir] = process.argv.slice(2);
const limited = process.env.KYE_LIMITED_TOKEN;
if (!base || !token || !outdir || !limited) {
  console.error("usage: KYE_LIMITED_TOKEN=... node catalog.mjs URL TOKEN OUTDIR");
  process.exit(2);
}
mkdirSync(outdir, { recursive: true });

const failures = [];
const check = (ok, what) => {
  if (!ok) failures.push(what);
  console.log(`${ok ? "ok  " : "FAIL"} ${what}`);
};
const deadline = (ms) => Date.now() + ms;

const browser = await chromium.launch({
  executablePath: process.env.KYE_CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
  timeout: 60_000,
});

/** A page whose console errors, page errors, failed requests and 4xx/5xx answers count as failures. */
async function watchedPage(context, label) {
  const page = await context.newPage();
  page.setDefaultTimeout(20_000);
  page.on("console", (m) => {
    if (m.type() === "error") failures.push(`${label}: console error: ${m.text()}`);
  });
  page.on("pageerror", (e) => failures.push(`${label}: page error: ${e.message}`));
  page.on("requestfailed", (r) => {
    // A poll cut short by navigating away is not a failure of the page.
    if (!r.url().endsWith("/runs.json")) failures.push(`${label}: request failed: ${r.url()} ${r.failure()?.errorText}`);
  });
  page.on("response", (r) => {
    if (r.status() >= 400) failures.push(`${label}: ${r.status()} for ${r.url()}`);
  });
  return page;
}

async function login(page, t) {
  await page.goto(`${base}/`);
  check(page.url() === `${base}/login`, "without a session the catalog shows the login page");
  await page.getByLabel("API token").fill(t);
  await Promise.all([page.waitForURL(`${base}/`), page.getByRole("button", { name: "Sign in" }).click()]);
  check(page.url() === `${base}/`, "signing in with a token opens the models page");
}

async function shot(page, name) {
  const path = join(outdir, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}

const shots = [];

// ---- Everything, as a role that reads every model. ----
const full = await browser.newContext({ viewport: { width: 1200, height: 900 } });
const page = await watchedPage(full, "full");
await login(page, token);

const headings = await page.locator("section.model h2").allTextContents();
for (const m of ["Pokemon", "PokemonType", "PokemonAbility"]) {
  check(headings.includes(m), `the models page lists ${m}`);
  const fetchers = await page.locator(`#model-${m} li.fetcher`).count();
  check(fetchers > 0, `${m} shows its fetcher(s) (${fetchers})`);
}
check((await page.locator("#model-Pokemon li.lister").count()) > 0, "Pokemon shows its lister");
check((await page.locator("#model-Pokemon code", { hasText: "assert weight > 0" }).count()) === 1, "assertions are listed");
check((await page.getByText("Weight in hectograms").count()) > 0, "field doc comments from the .kye file are shown");
await page.keyboard.press("Tab");
check((await page.evaluate(() => document.activeElement?.textContent)) === "Skip to content", "the first Tab reaches the skip link");
shots.push(await shot(page, "models"));

await page.goto(`${base}/lineage`);
const nodes = await page.locator("svg#lineage a.node").evaluateAll((as) => as.map((a) => a.dataset.model));
check(nodes.length === headings.length && headings.every((h) => nodes.includes(h)), `the lineage has a node per model (${nodes.join(", ")})`);
check((await page.locator("svg#lineage line.reference").count()) >= 2, "the lineage draws references");
shots.push(await shot(page, "lineage"));

await page.goto(`${base}/models/Pokemon/records`);
const first = page.locator("table tbody tr td a").first();
await Promise.all([page.waitForURL(/\/models\/Pokemon\/record\?/), first.click()]);
check((await page.getByRole("heading", { name: "Provenance" }).count()) === 1, "a record page shows its provenance");
const typeLink = page.locator('a[href^="/models/PokemonType/record?"]').first();
check((await typeLink.count()) === 1, "a record's references are links");
if ((await typeLink.count()) === 0) writeFileSync(join(outdir, "record.html"), await page.content());
shots.push(await shot(page, "record"));
await Promise.all([page.waitForURL(/\/models\/PokemonType\/record\?/), typeLink.click()]);
check((await page.locator("h1").textContent()).startsWith("PokemonType"), "the referenced record opens");

await page.goto(`${base}/models/Pokemon/records?edge=name&value=bulbasaur`);
check((await page.locator("table tbody tr").count()) === 1, "a lookup by the name index finds one record");
shots.push(await shot(page, "records"));

await page.goto(`${base}/rejects`);
const mark = page.locator('mark.failing[data-field="base_experience"]');
check((await mark.count()) >= 1 && (await mark.first().isVisible()), "a reject highlights its failing field (base_experience)");
shots.push(await shot(page, "rejects"));

await page.goto(`${base}/drift`);
check((await page.locator("table tbody tr").count()) >= 1, "the drift page lists unknown fields with an example");
shots.push(await shot(page, "drift"));

// A running backfill's progress changes without a reload.
const started = await fetch(`${base}/v1/runs`, {
  method: "POST",
  headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
  body: JSON.stringify({ request: "Pokemon.id in 9000..=9039" }),
});
const run = (await started.json()).id;
check(started.status === 202 && Number.isInteger(run), `a backfill starts (run ${run})`);
await page.goto(`${base}/runs`);
await page.evaluate(() => (window.__sameDocument = true));
const done = () =>
  page.locator(`#run-${run} [data-count]`).evaluateAll((tds) => tds.reduce((n, td) => n + Number(td.textContent), 0));
const before = await done();
let after = before;
let status = "";
for (const until = deadline(30_000); Date.now() < until; ) {
  await page.waitForTimeout(250);
  after = await done();
  status = await page.locator(`#run-${run} [data-field="status"]`).textContent();
  if (after > before && status !== "running") break;
}
check(after > before, `the running backfill's progress changed on the page (${before} -> ${after} keys)`);
check(status === "completed", `its status followed to ${status}`);
check(await page.evaluate(() => window.__sameDocument === true), "without a reload");
shots.push(await shot(page, "runs"));
await page.close();

// ---- A role without read on PokemonType: absent everywhere, its record URL is 403. ----
const narrow = await browser.newContext({ viewport: { width: 1200, height: 900 } });
const npage = await watchedPage(narrow, "limited");
await login(npage, limited);
for (const path of ["/", "/lineage", "/runs", "/rejects", "/drift", "/models/Pokemon/records", "/models/Pokemon/record?id=1"]) {
  await npage.goto(`${base}${path}`);
  const html = await npage.content();
  check(!html.includes("PokemonType"), `PokemonType is absent from ${path} for the limited role`);
}
await npage.goto(`${base}/`);
const readable = await npage.locator("section.model h2").allTextContents();
await npage.goto(`${base}/lineage`);
const limitedNodes = await npage.locator("svg#lineage a.node").evaluateAll((as) => as.map((a) => a.dataset.model));
check(
  readable.length > 0 && limitedNodes.length === readable.length && readable.every((m) => limitedNodes.includes(m)),
  `the limited lineage has a node per model it reads (${limitedNodes.join(", ")})`,
);
const refused = await narrow.request.get(`${base}/models/PokemonType/record?name=grass`);
check(refused.status() === 403, `PokemonType's record URL answers ${refused.status()} (403 expected)`);
await npage.close();

// ---- The screenshots are not blank: decoded in a page, many colours and real variance. ----
const blank = await (await browser.newContext()).newPage();
const stats = {};
for (const path of shots) {
  const data = readFileSync(path).toString("base64");
  const s = await blank.evaluate(async (src) => {
    const img = new Image();
    img.src = src;
    await img.decode();
    const c = document.createElement("canvas");
    c.width = img.width;
    c.height = img.height;
    const ctx = c.getContext("2d");
    ctx.drawImage(img, 0, 0);
    const px = ctx.getImageData(0, 0, c.width, c.height).data;
    const colours = new Set();
    let sum = 0, sq = 0, n = 0;
    for (let i = 0; i < px.length; i += 4 * 7) {
      const y = 0.2126 * px[i] + 0.7152 * px[i + 1] + 0.0722 * px[i + 2];
      sum += y; sq += y * y; n += 1;
      if (colours.size < 5000) colours.add((px[i] << 16) | (px[i + 1] << 8) | px[i + 2]);
    }
    const mean = sum / n;
    return { width: img.width, height: img.height, colours: colours.size, variance: sq / n - mean * mean };
  }, `data:image/png;base64,${data}`);
  stats[path] = s;
  check(s.width >= 800 && s.colours >= 16 && s.variance >= 100, `${path} is not blank (${JSON.stringify(s)})`);
}
writeFileSync(join(outdir, "screenshots.json"), JSON.stringify(stats, null, 2));
await browser.close();

if (failures.length) {
  console.error(`\n${failures.length} failure(s):\n- ${failures.join("\n- ")}`);
  process.exit(1);
}
console.log(`\nall checks passed; screenshots in ${outdir}`);
