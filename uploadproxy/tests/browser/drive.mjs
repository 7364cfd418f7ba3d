#!/usr/bin/env node
// Drives the proxy's upload page in Debian's headless Chromium (never a downloaded browser)
// for tests: opens the page, chooses the file, clicks Upload, optionally reloads the page
// mid-upload and resumes, waits for the end, takes a screenshot and prints one JSON line.
//
//   node drive.mjs --url 'https://127.0.0.1:PORT/#token=T' --file PATH --screenshot OUT.png \
//       [--checksum browser|none|sha256:HEX] [--reload-at BYTES] [--timeout SECONDS] \
//       [--chromium PATH]
//
// Prints {"ok":true,"offset":N,"serverDigest":"sha256:…","resumedFrom":N,"statusText":"…",…}
// and exits 0 when the page reports the upload complete; otherwise {"ok":false,"error":"…",
// "statusText":"…",…} and exits 1. The page's state is read from the data attributes of
// <main id="uploader"> (see page/static/upload.js), never from its wording.

import { chromium } from 'playwright-core';

const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

function usage(message) {
  process.stderr.write(
    `${message}\nusage: node drive.mjs --url URL --file PATH --screenshot OUT.png ` +
      '[--checksum browser|none|sha256:HEX] [--reload-at BYTES] [--timeout SECONDS] [--chromium PATH]\n',
  );
  process.exit(2);
}

function parseArgs(argv) {
  const options = {
    checksum: 'none',
    reloadAt: null,
    timeoutSeconds: 120,
    chromium: process.env.CHROMIUM || '/usr/bin/chromium',
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const [name, inline] = arg.includes('=') ? arg.split(/=(.*)/s, 2) : [arg, undefined];
    const value = () => {
      if (inline !== undefined) return inline;
      if (i + 1 >= argv.length) usage(`${name} needs a value`);
      return argv[++i];
    };
    switch (name) {
      case '--url':
        options.url = value();
        break;
      case '--file':
        options.file = value();
        break;
      case '--screenshot':
        options.screenshot = value();
        break;
      case '--checksum':
        options.checksum = value();
        break;
      case '--reload-at':
        options.reloadAt = Number(value());
        if (!Number.isSafeInteger(options.reloadAt) || options.reloadAt < 0) {
          usage('--reload-at takes a number of bytes');
        }
        break;
      case '--timeout':
        options.timeoutSeconds = Number(value());
        if (!(options.timeoutSeconds > 0)) usage('--timeout takes a number of seconds');
        break;
      case '--chromium':
        options.chromium = value();
        break;
      case '--help':
      case '-h':
        usage('Drives the upload page in headless Chromium.');
        break;
      default:
        usage(`unknown argument ${arg}`);
    }
  }
  for (const required of ['url', 'file', 'screenshot']) {
    if (!options[required]) usage(`--${required} is required`);
  }
  if (
    !['browser', 'none'].includes(options.checksum) &&
    !/^sha256:[0-9a-fA-F]{64}$/.test(options.checksum)
  ) {
    usage('--checksum is browser, none, or sha256:HEX');
  }
  return options;
}

/** The token in the URL's fragment, to give the page again should it not have kept it. */
function tokenOf(url) {
  const hash = new URL(url).hash.replace(/^#/, '');
  return new URLSearchParams(hash).get('token') || '';
}

/** The data attributes of the page's state element. */
async function pageState(page) {
  return page.evaluate(() => {
    const root = document.getElementById('uploader');
    const text = (id) => {
      const el = document.getElementById(id);
      return el && !el.hidden ? el.innerText.replace(/\s+/g, ' ').trim() : '';
    };
    return {
      ...root.dataset,
      statusText: text('status'),
      errorText: text('error'),
    };
  });
}

async function waitForState(page, accept, timeoutMs) {
  await page.waitForFunction(
    (states) => states.includes(document.getElementById('uploader').dataset.state),
    accept,
    { timeout: timeoutMs, polling: 100 },
  );
}

/** Sets the page up for an upload of `file`, as a person would, and clicks Upload. */
async function chooseAndUpload(page, options, token, deadline) {
  await page.waitForSelector('#uploader[data-ready="true"]', { timeout: remaining(deadline) });
  if (!(await page.inputValue('#token'))) await page.fill('#token', token);
  if (options.checksum === 'browser') {
    await page.check('#compute-checksum');
  } else if (options.checksum !== 'none') {
    await page.fill('#expected-checksum', options.checksum);
  }
  await page.setInputFiles('#file', options.file);
  // The page looks for an unfinished upload of this file before Upload may be clicked.
  await page.waitForFunction(
    () => document.getElementById('uploader').dataset.previous !== 'checking',
    null,
    { timeout: remaining(deadline), polling: 50 },
  );
  const previous = (await pageState(page)).previous;
  await page.click('#upload', { timeout: remaining(deadline) });
  return previous;
}

function remaining(deadline) {
  return Math.max(1, deadline - Date.now());
}

async function main() {
  const options = parseArgs(process.argv.slice(2));
  const deadline = Date.now() + options.timeoutSeconds * 1000;
  const token = tokenOf(options.url);
  const report = { ok: false };
  let browser;
  let page;
  try {
    browser = await chromium.launch({
      executablePath: options.chromium,
      headless: true,
      args: CHROMIUM_ARGS,
    });
    const context = await browser.newContext({
      ignoreHTTPSErrors: true,
      viewport: { width: 1000, height: 900 },
    });
    page = await context.newPage();
    page.on('console', (message) => {
      if (message.type() === 'error' || message.type() === 'warning') {
        process.stderr.write(`page ${message.type()}: ${message.text()}\n`);
      }
    });
    page.on('pageerror', (error) => process.stderr.write(`page error: ${error.message}\n`));

    await page.goto(options.url, { waitUntil: 'load', timeout: remaining(deadline) });
    await chooseAndUpload(page, options, token, deadline);

    report.reloaded = false;
    if (options.reloadAt !== null) {
      // Until the progress passes the mark, or the upload ends before it.
      await page.waitForFunction(
        (mark) => {
          const root = document.getElementById('uploader');
          return (
            Number(root.dataset.sent) >= mark || ['done', 'error', 'cancelled'].includes(root.dataset.state)
          );
        },
        options.reloadAt,
        { timeout: remaining(deadline), polling: 20 },
      );
      const before = await pageState(page);
      if (before.state === 'uploading') {
        report.sentBeforeReload = Number(before.sent);
        await page.reload({ waitUntil: 'load', timeout: remaining(deadline) });
        report.previousAfterReload = await chooseAndUpload(page, options, token, deadline);
        report.reloaded = true;
      }
    }

    await waitForState(page, ['done', 'error', 'cancelled'], remaining(deadline));
    const state = await pageState(page);
    await page.screenshot({ path: options.screenshot, fullPage: true });
    Object.assign(report, {
      ok: state.state === 'done',
      state: state.state,
      offset: Number(state.offset),
      size: Number(state.size),
      serverDigest: state.serverDigest,
      expectedDigest: state.expectedDigest,
      digestMatch: state.digestMatch,
      resumedFrom: state.resumedFrom === '' ? null : Number(state.resumedFrom),
      statusText: state.statusText,
    });
    if (!report.ok) {
      report.error = state.errorText || `the page ended in state ${state.state}`;
      report.errorStatus = state.errorStatus === '' ? null : Number(state.errorStatus);
    }
  } catch (error) {
    report.ok = false;
    report.error = error && error.message ? error.message.split('\n')[0] : String(error);
    if (page) {
      try {
        const state = await pageState(page);
        report.state = state.state;
        report.statusText = state.statusText;
        if (state.errorText) report.pageError = state.errorText;
        await page.screenshot({ path: options.screenshot, fullPage: true });
      } catch (_) {
        // The page itself is gone.
      }
    }
  } finally {
    if (browser) await browser.close().catch(() => {});
  }
  process.stdout.write(`${JSON.stringify(report)}\n`);
  process.exit(report.ok ? 0 : 1);
}

main();
