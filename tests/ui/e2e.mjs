// wharf's web UI in a real browser: Debian's chromium, driven by playwright-core.
// Started by tests/it/ui_browser.rs, which runs wharf, pushes the images and passes:
//   WHARF_URL    the server, e.g. http://127.0.0.1:40123
//   SCREENSHOTS  where to save a screenshot of each page
// The server has alice (may delete), bob (may only pull), team/app:1 and team/app:old
// pushed by podman, other/thing, and evil/app:1, whose labels and history carry markup.
// Any failed step throws, and node exits non-zero with the message.

import { chromium } from "playwright-core";
import assert from "node:assert/strict";
import path from "node:path";

const base = process.env.WHARF_URL;
const shots = process.env.SCREENSHOTS;
assert.ok(base && shots, "WHARF_URL and SCREENSHOTS must be set");
const host = new URL(base).host;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
  ],
});

// Anything an image smuggled in that runs shows up here: a dialog, the title changed, a
// Content-Security-Policy violation, or a page error.
const alarms = [];
async function newPage() {
  const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: base });
  const page = await context.newPage();
  page.on("dialog", async (d) => {
    alarms.push(`dialog: ${d.message()}`);
    await d.dismiss();
  });
  page.on("pageerror", (e) => alarms.push(`page error: ${e.message}`));
  page.on("console", (m) => {
    // A refused page (403) or a missing favicon is logged as a failed load; anything
    // else (a CSP violation above all) is an alarm.
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) {
      alarms.push(`console error: ${m.text()}`);
    }
  });
  return page;
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true });
}

async function login(page, user, password) {
  await page.goto(`${base}/ui/`);
  await page.getByRole("link", { name: "Log in" }).click();
  await page.getByLabel("User name").fill(user);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.getByText(`Signed in as ${user}`).waitFor();
}

async function logout(page) {
  await page.getByRole("button", { name: "Log out" }).click();
  await page.getByRole("link", { name: "Log in" }).waitFor();
}

try {
  const page = await newPage();

  // Anonymous: nothing may be pulled without a login on this server.
  await page.goto(`${base}/ui/`);
  await page.getByText("0 repositories").waitFor();
  await shot(page, "anonymous");

  // alice logs in, searches as she types, and finds the image podman pushed.
  await login(page, "alice", "a-pass");
  await page.getByText("3 repositories").waitFor();
  await shot(page, "repositories");
  await page.getByLabel("Search repositories").pressSequentially("team", { delay: 30 });
  await page.getByText("1 repository", { exact: true }).waitFor();
  assert.equal(await page.getByRole("link", { name: "other/thing" }).count(), 0);
  assert.match(page.url(), /q=team/);
  await page.getByRole("link", { name: "team/app" }).click();
  await page.getByRole("heading", { name: "team/app" }).waitFor();
  await shot(page, "repository");

  // The copy button puts the pull command on the clipboard.
  const pull = `podman pull ${host}/team/app:1`;
  await page.getByRole("button", { name: `Copy ${pull}` }).click();
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), pull);

  // The image page of the tag podman pushed.
  await page.getByRole("link", { name: "1", exact: true }).click();
  await page.getByRole("heading", { name: "Layers" }).waitFor();
  await page.getByRole("heading", { name: "Manifest" }).waitFor();
  await shot(page, "image");

  // The storage page, from the header: usage of what alice may pull, with the totals.
  await page.getByRole("link", { name: "Storage", exact: true }).click();
  await page.getByRole("heading", { name: "Usage by repository" }).waitFor();
  const usage = page.locator("table.usage");
  for (const repo of ["team/app", "other/thing", "evil/app"]) {
    assert.equal(await usage.getByRole("link", { name: repo, exact: true }).count(), 1, repo);
  }
  await usage.getByRole("rowheader", { name: "3 repositories" }).waitFor();
  await page.getByRole("heading", { name: "Garbage collection" }).waitFor();
  // alice may delete everywhere: she sees the collector's schedule and last run.
  await page.getByText("Schedule", { exact: true }).waitFor();
  await page.getByText("Last run", { exact: true }).waitFor();
  await shot(page, "storage");

  // Deleting a tag, with the confirmation.
  await page.goto(`${base}/ui/repo/team/app`);
  await page.locator("#tag-old").getByRole("link", { name: "Delete tag…" }).click();
  await page.getByText("Delete the tag").waitFor();
  await shot(page, "delete-confirmation");
  await page.getByRole("button", { name: "Delete", exact: true }).click();
  await page.getByRole("heading", { name: "team/app" }).waitFor();
  assert.equal(await page.locator("#tag-old").count(), 0, "the tag is gone");
  assert.equal(await page.locator("#tag-1").count(), 1, "the other tag stays");

  // Deleting a whole repository: the confirmation says what it holds.
  await page.goto(`${base}/ui/repo/other/thing`);
  await page.getByRole("link", { name: "Delete repository…" }).click();
  await page.getByRole("heading", { name: "Delete the repository?" }).waitFor();
  await page.getByText("of blobs").waitFor();
  await shot(page, "delete-repository-confirmation");
  await page.getByRole("button", { name: "Delete repository" }).click();
  await page.getByRole("heading", { name: "Repositories" }).waitFor();
  assert.equal(await page.getByRole("link", { name: "other/thing" }).count(), 0, "the repository is gone");
  assert.equal(await page.getByRole("link", { name: "team/app" }).count(), 1);

  // The hostile image renders as text.
  await page.goto(`${base}/ui/image/evil/app:1`);
  await page.getByRole("heading", { name: "Labels" }).waitFor();
  await page.getByText("<script>document.title='pwned'</script>").first().waitFor();
  assert.notEqual(await page.title(), "pwned");
  assert.equal(await page.locator("main img").count(), 0, "no element came from a label");
  await shot(page, "hostile-image");
  await logout(page);

  // bob may pull but not delete: no button, and the delete page refuses him.
  await login(page, "bob", "b-pass");
  await page.goto(`${base}/ui/repo/team/app`);
  assert.equal(await page.getByRole("link", { name: "Delete tag…" }).count(), 0);
  const refused = await page.goto(`${base}/ui/delete?repo=team/app&ref=1`);
  assert.equal(refused.status(), 403);
  await page.getByText("You may not delete in team/app.").waitFor();
  await shot(page, "delete-refused");
  await page.goto(`${base}/ui/`);
  await logout(page);
  await page.getByText("0 repositories").waitFor();

  // A phone-sized screen, dark: still readable (a screenshot to look at).
  const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, colorScheme: "dark" });
  const small = await phone.newPage();
  await small.goto(`${base}/ui/login`);
  await shot(small, "login-phone-dark");

  assert.deepEqual(alarms, [], "nothing from an image ran, and the pages had no errors");
  console.log("ui e2e: ok");
} finally {
  await browser.close();
}
