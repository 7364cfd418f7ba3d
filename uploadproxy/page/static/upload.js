// The upload page: a tus 1.0 upload (tus-js-client) to this proxy's /v1beta1/upload-tus.
//
// State lives on <main id="uploader"> as data attributes, for people reading the DOM and for
// tests (tests/browser/drive.mjs):
//   data-state          idle | hashing | uploading | paused | done | error | cancelled
//   data-sent           bytes handed to the network so far (drives the progress bar)
//   data-offset         bytes the server has confirmed (its Upload-Offset)
//   data-size           the file's size
//   data-previous       none | checking | found: an unfinished upload of the chosen file
//   data-resumed-from   the server's offset this upload started from (0 for a new upload)
//   data-server-digest  the digest the server computed (sha256:HEX), once complete
//   data-expected-digest the checksum sent as the upload's `checksum` metadata, if any
//   data-digest-match   yes | no | unknown, once complete
//   data-error-status   the HTTP status of the last failure (0: no answer)
//   data-ready          "true" once this script has set the page up

(function () {
  'use strict';

  const TUS_ENDPOINT = new URL('v1beta1/upload-tus', document.baseURI).href;
  // A dropped connection is retried after these delays; the count starts again whenever the
  // server's offset moved, so an upload survives any number of drops with progress between.
  const RETRY_DELAYS = [0, 500, 1000, 2000, 4000, 8000, 15000, 30000];
  // The token is kept for this tab only, so that a reload can resume; never in the URL.
  const TOKEN_KEY = 'cdi-upload-token';
  const SPEED_WINDOW_MS = 5000;

  const $ = (id) => document.getElementById(id);
  const root = $('uploader');
  const form = $('upload-form');
  const fileInput = $('file');
  const tokenInput = $('token');
  const showToken = $('show-token');
  const tokenInfo = $('token-info');
  const expectedInput = $('expected-checksum');
  const computeBox = $('compute-checksum');
  const previousBox = $('previous');
  const previousText = $('previous-text');
  const startOverButton = $('start-over');
  const uploadButton = $('upload');
  const pauseButton = $('pause');
  const resumeButton = $('resume');
  const cancelButton = $('cancel');
  const progressBar = $('progress');
  const progressText = $('progress-text');
  const figures = $('figures');
  const statusLine = $('status');
  const errorBox = $('error');
  const resultBox = $('result');
  const resultText = $('result-text');
  const serverDigestOut = $('server-digest');
  const expectedDigestOut = $('expected-digest');
  const digestVerdict = $('digest-verdict');

  /** Everything about the current attempt. */
  const session = {
    file: null,
    upload: null, // tus.Upload once started
    // The upload's URL on the server, kept here too: tus-js-client forgets it when a HEAD is
    // refused (a 401 from an expired token), and Resume with a new token must find it again.
    uploadUrl: null,
    hashing: null, // AbortController while hashing
    previous: null, // a stored unfinished upload of `file`
    previousOffset: null,
    lookup: Promise.resolve(),
    lookupGeneration: 0,
    expected: '', // sha256:HEX sent as metadata, or ''
    resumable: false, // after an error: can Resume continue?
    samples: [], // [time, bytes] for the speed
    retrying: false,
  };

  if (typeof tus === 'undefined' || !tus.isSupported) {
    showError(
      'This browser cannot run the upload (tus-js-client did not load, or the browser lacks ' +
        'XMLHttpRequest and Blob). Upload with virtctl image-upload or cdictl upload instead.',
    );
    return;
  }

  // ---------------------------------------------------------------------------------------
  // Formatting.

  function bytes(n) {
    if (!Number.isFinite(n)) return '—';
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let value = n;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) {
      value /= 1024;
      unit++;
    }
    return unit === 0 ? `${n} B` : `${value.toFixed(value < 10 ? 2 : 1)} ${units[unit]}`;
  }

  function duration(seconds) {
    if (!Number.isFinite(seconds) || seconds < 0) return '—';
    const s = Math.round(seconds);
    if (s < 60) return `${s} s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m} min ${s % 60} s`;
    const h = Math.floor(m / 60);
    if (h < 48) return `${h} h ${m % 60} min`;
    return `${Math.floor(h / 24)} days`;
  }

  function percent(done, total) {
    if (!total) return 0;
    return Math.min(100, (done / total) * 100);
  }

  // ---------------------------------------------------------------------------------------
  // The token.

  function currentToken() {
    return tokenInput.value.trim().replace(/^Bearer\s+/i, '');
  }

  function takeTokenFromFragment() {
    const fragment = window.location.hash.replace(/^#/, '');
    if (!fragment) return;
    const params = new URLSearchParams(fragment);
    const token = params.get('token');
    if (token === null) return;
    tokenInput.value = token;
    rememberToken();
    params.delete('token');
    const rest = params.toString();
    // Out of the address bar and the history entry: not bookmarked, not shared by copying it.
    history.replaceState(
      history.state,
      '',
      window.location.pathname + window.location.search + (rest ? `#${rest}` : ''),
    );
  }

  function rememberToken() {
    try {
      const token = currentToken();
      if (token) sessionStorage.setItem(TOKEN_KEY, token);
      else sessionStorage.removeItem(TOKEN_KEY);
    } catch (_) {
      // Storage may be disabled; the token then lasts until the page is left.
    }
  }

  function recallToken() {
    if (tokenInput.value) return;
    try {
      tokenInput.value = sessionStorage.getItem(TOKEN_KEY) || '';
    } catch (_) {
      // As above.
    }
  }

  /** The token's payload, read without verifying it (only the proxy can): for display. */
  function tokenClaims(token) {
    const parts = token.split('.');
    if (parts.length !== 3) return null;
    try {
      const b64 = parts[1].replace(/-/g, '+').replace(/_/g, '/');
      const json = atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4));
      return JSON.parse(json);
    } catch (_) {
      return null;
    }
  }

  function describeToken() {
    const token = currentToken();
    if (!token) {
      tokenInfo.textContent = '';
      return;
    }
    const claims = tokenClaims(token);
    if (!claims) {
      tokenInfo.textContent = 'This does not look like an upload token (a JWT of three parts).';
      return;
    }
    const target =
      claims.namespace && claims.name ? `For volume ${claims.namespace}/${claims.name}.` : '';
    let expiry = '';
    if (typeof claims.exp === 'number') {
      const left = claims.exp - Date.now() / 1000;
      const at = new Date(claims.exp * 1000).toLocaleTimeString();
      expiry =
        left > 0
          ? ` Valid until ${at} (${duration(left)} from now).`
          : ` Expired at ${at}: get a new token.`;
    }
    tokenInfo.textContent = (target + expiry).trim();
  }

  /** Which volume the token is for, so that one file sent to two volumes resumes neither. */
  function tokenTarget() {
    const claims = tokenClaims(currentToken());
    return claims && claims.namespace && claims.name
      ? `${claims.namespace}/${claims.name}`
      : 'unknown-volume';
  }

  // ---------------------------------------------------------------------------------------
  // Checksums.

  /** `sha256:HEX` from what the user pasted, '' for nothing, or null when it is not one. */
  function parseExpected(text) {
    let value = text.trim();
    if (!value) return '';
    // sha256sum prints "HEX  name"; CDI writes "sha256:HEX".
    value = value.split(/\s+/)[0].toLowerCase();
    if (value.startsWith('sha256:')) value = value.slice('sha256:'.length);
    return /^[0-9a-f]{64}$/.test(value) ? `sha256:${value}` : null;
  }

  /** `sha256:HEX` from the server's X-CDI-Checksum, Repr-Digest or the JSON body. */
  function serverDigest(response) {
    if (!response) return '';
    const cdi = (response.getHeader('X-CDI-Checksum') || '').trim().toLowerCase();
    if (/^[a-z0-9]+:[0-9a-f]+$/.test(cdi)) return cdi;
    const repr = response.getHeader('Repr-Digest') || '';
    const member = /sha-256=:([A-Za-z0-9+/=]+):/.exec(repr);
    if (member) {
      try {
        const raw = atob(member[1]);
        return (
          'sha256:' +
          Array.from(raw, (c) => c.charCodeAt(0).toString(16).padStart(2, '0')).join('')
        );
      } catch (_) {
        // Fall through to the body.
      }
    }
    try {
      const body = JSON.parse(response.getBody() || '{}');
      if (typeof body.digest === 'string') return body.digest.toLowerCase();
    } catch (_) {
      // Not JSON.
    }
    return '';
  }

  // ---------------------------------------------------------------------------------------
  // Display.

  function setState(state) {
    root.dataset.state = state;
    const hasFile = Boolean(session.file);
    const hasToken = Boolean(currentToken());
    const busy = state === 'hashing' || state === 'uploading';
    uploadButton.disabled = !(
      hasFile &&
      hasToken &&
      (state === 'idle' || state === 'cancelled' || (state === 'error' && !session.resumable))
    );
    pauseButton.disabled = state !== 'uploading';
    resumeButton.disabled = !(state === 'paused' || (state === 'error' && session.resumable));
    cancelButton.disabled = !(busy || state === 'paused' || (state === 'error' && session.resumable));
    startOverButton.disabled = busy;
    for (const input of [fileInput, expectedInput, computeBox]) {
      input.disabled = busy || state === 'paused';
    }
  }

  function say(text) {
    statusLine.textContent = text;
  }

  function showError(text, serverText) {
    errorBox.replaceChildren();
    const p = document.createElement('p');
    p.textContent = text;
    errorBox.append(p);
    if (serverText) {
      const label = document.createElement('p');
      label.textContent = 'The server said:';
      const server = document.createElement('p');
      server.className = 'server-text';
      server.id = 'server-text';
      server.textContent = serverText.length > 2000 ? `${serverText.slice(0, 2000)}…` : serverText;
      errorBox.append(label, server);
    }
    errorBox.hidden = false;
  }

  function clearError() {
    errorBox.hidden = true;
    errorBox.replaceChildren();
    root.dataset.errorStatus = '';
  }

  function resetProgress() {
    session.samples = [];
    progressBar.value = 0;
    progressBar.removeAttribute('aria-valuetext');
    progressText.textContent = 'Nothing sent yet.';
    figures.hidden = true;
    root.dataset.sent = '0';
    root.dataset.offset = '0';
  }

  function showProgress(sent, total) {
    const now = performance.now();
    const samples = session.samples;
    samples.push([now, sent]);
    while (samples.length > 2 && now - samples[0][0] > SPEED_WINDOW_MS) samples.shift();
    const [t0, b0] = samples[0];
    const seconds = (now - t0) / 1000;
    const speed = seconds > 0.5 ? (sent - b0) / seconds : NaN;
    const left = speed > 0 ? (total - sent) / speed : NaN;
    const pct = percent(sent, total);
    root.dataset.sent = String(sent);
    progressBar.value = pct;
    progressBar.setAttribute('aria-valuetext', `${pct.toFixed(0)} percent, ${bytes(sent)} of ${bytes(total)}`);
    progressText.textContent = `${bytes(sent)} of ${bytes(total)} sent (${pct.toFixed(1)} %)`;
    figures.hidden = false;
    $('figure-sent').textContent = `${bytes(sent)} of ${bytes(total)}`;
    $('figure-percent').textContent = `${pct.toFixed(1)} %`;
    $('figure-speed').textContent = Number.isFinite(speed) ? `${bytes(Math.max(0, speed))}/s` : '—';
    $('figure-eta').textContent = Number.isFinite(left) ? duration(left) : '—';
  }

  // ---------------------------------------------------------------------------------------
  // Earlier, unfinished uploads of the same file (tus-js-client's URL storage).

  function fingerprint(file, options) {
    return Promise.resolve(
      ['cdi-upload', tokenTarget(), options.endpoint, file.name, file.type, file.size, file.lastModified].join('::'),
    );
  }

  function urlStorage() {
    return tus.defaultOptions.urlStorage;
  }

  async function forgetStoredUploads(file) {
    if (!file) return;
    try {
      const key = await fingerprint(file, { endpoint: TUS_ENDPOINT });
      for (const entry of await urlStorage().findUploadsByFingerprint(key)) {
        await urlStorage().removeUpload(entry.urlStorageKey);
      }
    } catch (_) {
      // Nothing stored, or no storage.
    }
  }

  /** The server's Upload-Offset and Upload-Length of `url`, or why there are none. */
  async function serverOffset(url) {
    const token = currentToken();
    if (!token) return { unknown: 'no token yet' };
    try {
      const response = await fetch(url, {
        method: 'HEAD',
        cache: 'no-store',
        headers: { 'Tus-Resumable': '1.0.0', Authorization: `Bearer ${token}` },
      });
      if (response.ok) {
        return {
          offset: Number(response.headers.get('Upload-Offset')),
          length: Number(response.headers.get('Upload-Length')),
        };
      }
      if (response.status === 404 || response.status === 410) return { gone: true };
      if (response.status === 409) return { completed: true };
      return { unknown: `the server answered ${response.status}` };
    } catch (e) {
      return { unknown: 'the server could not be reached' };
    }
  }

  function lookForPrevious() {
    const generation = ++session.lookupGeneration;
    const file = session.file;
    session.previous = null;
    session.previousOffset = null;
    previousBox.hidden = true;
    if (!file) {
      root.dataset.previous = 'none';
      session.lookup = Promise.resolve();
      return session.lookup;
    }
    root.dataset.previous = 'checking';
    session.lookup = (async () => {
      const probe = new tus.Upload(file, uploadOptions({}));
      let found = [];
      try {
        found = await probe.findPreviousUploads();
      } catch (_) {
        found = [];
      }
      found.sort((a, b) => String(b.creationTime).localeCompare(String(a.creationTime)));
      for (const entry of found) {
        if (!entry.uploadUrl) continue;
        const where = await serverOffset(entry.uploadUrl);
        if (generation !== session.lookupGeneration) return;
        if (where.gone || where.completed) {
          await urlStorage().removeUpload(entry.urlStorageKey);
          continue;
        }
        session.previous = entry;
        session.previousOffset = Number.isFinite(where.offset) ? where.offset : null;
        break;
      }
      if (generation !== session.lookupGeneration) return;
      if (!session.previous) {
        root.dataset.previous = 'none';
        return;
      }
      root.dataset.previous = 'found';
      const when = new Date(session.previous.creationTime).toLocaleString();
      const checksum =
        session.previous.metadata && session.previous.metadata.checksum
          ? ` It carries the checksum ${session.previous.metadata.checksum}, which the server will verify.`
          : '';
      previousText.textContent =
        session.previousOffset !== null
          ? `An unfinished upload of this file (started ${when}) is on the server with ` +
            `${bytes(session.previousOffset)} of ${bytes(file.size)} ` +
            `(${percent(session.previousOffset, file.size).toFixed(1)} %). Upload resumes it from there.${checksum}`
          : `An unfinished upload of this file (started ${when}) was found; its state on the server ` +
            `could not be read yet. Upload tries to resume it.${checksum}`;
      previousBox.hidden = false;
      say('Ready to resume the earlier upload of this file.');
    })();
    return session.lookup;
  }

  // ---------------------------------------------------------------------------------------
  // Errors.

  function describeFailure(err) {
    const response = err && err.originalResponse;
    const status = response ? response.getStatus() : 0;
    let serverText = '';
    if (response) {
      try {
        serverText = (response.getBody() || '').trim();
      } catch (_) {
        serverText = '';
      }
    }
    const messages = {
      0:
        'The upload proxy could not be reached, or the connection kept dropping, and the ' +
        'retries ran out. The server keeps what it received: check the network and press Resume.',
      400:
        'The server refused the upload (400 Bad Request). If it names the checksum, the file ' +
        "does not have the expected SHA-256 and nothing was kept: check the file and the value, " +
        'then upload again.',
      401:
        'The token was not accepted (401 Unauthorized): it is missing, malformed, expired, or ' +
        'for another volume. Tokens last a few minutes and every new request needs a valid ' +
        'one: get a new token, paste it above, and press Resume.',
      403: 'Not allowed (403 Forbidden): this token does not permit uploading to that volume.',
      404:
        'The upload is no longer on the server (404): it completed, failed, was cancelled, or ' +
        'its upload pod restarted. Upload again to start over.',
      409:
        'The server and this page disagree about the upload (409 Conflict): it may have ' +
        'completed already, or another tab is sending it. Press Resume to ask the server where it is.',
      413:
        'The image does not fit (413 Payload Too Large): it is larger than the volume. Create ' +
        'the DataVolume with a larger size.',
      423: 'Another request still holds this upload (423 Locked). Wait a few seconds and press Resume.',
      460:
        'Part of the upload arrived damaged (460 Checksum Mismatch). Press Resume to send it again.',
      502:
        "The upload proxy could not reach the volume's upload server (502 Bad Gateway). Wait, " +
        'then press Resume.',
      503:
        "The volume's upload server is not ready (503 Service Unavailable): the DataVolume may " +
        'still be pending, or its upload has already finished. Wait, then press Resume.',
    };
    const text =
      messages[status] ||
      (status
        ? `The server answered ${status}.`
        : `The upload failed: ${err && err.message ? err.message : String(err)}`);
    const resumable = status === 0 || status === 401 || status === 409 || status === 423 || status === 460 || status >= 500;
    return { status, text, serverText, resumable };
  }

  function shouldRetry(err, attempt, options) {
    const status = err.originalResponse ? err.originalResponse.getStatus() : 0;
    const retry = status === 0 || status === 409 || status === 423 || status >= 500;
    if (retry && root.dataset.state === 'uploading') {
      const delay = options.retryDelays[attempt] || 0;
      session.retrying = true;
      session.samples = [];
      say(
        `${status ? `The server answered ${status}` : 'The connection was lost'}; trying again` +
          `${delay ? ` in ${(delay / 1000).toFixed(1)} s` : ''} (attempt ${attempt + 1} of ` +
          `${options.retryDelays.length}). The server keeps what it received.`,
      );
    }
    return retry;
  }

  // ---------------------------------------------------------------------------------------
  // The upload.

  function uploadOptions(metadata) {
    return {
      endpoint: TUS_ENDPOINT,
      metadata,
      fingerprint,
      retryDelays: RETRY_DELAYS,
      // One PATCH for the rest of the file: a token is checked per request and lasts minutes,
      // so fewer requests outlive it; the server keeps what a cut request delivered anyway.
      chunkSize: Infinity,
      storeFingerprintForResuming: true,
      removeFingerprintOnSuccess: true,
      onBeforeRequest(request) {
        // The token in the field now, so a pasted new one takes effect on Resume.
        request.setHeader('Authorization', `Bearer ${currentToken()}`);
      },
      onShouldRetry: shouldRetry,
      onUploadUrlAvailable() {
        session.retrying = false;
        if (session.upload && session.upload.url) session.uploadUrl = session.upload.url;
      },
      onProgress(sent, total) {
        if (root.dataset.resumedFrom === '') {
          root.dataset.resumedFrom = String(sent);
          if (sent > 0) say(`Resuming from ${bytes(sent)}, where the server stopped.`);
        }
        if (session.retrying) {
          session.retrying = false;
          say(`Uploading ${session.file.name} again from ${bytes(sent)}.`);
        }
        showProgress(sent, total);
      },
      onChunkComplete(_chunk, accepted) {
        root.dataset.offset = String(accepted);
      },
      onSuccess({ lastResponse }) {
        finished(lastResponse);
      },
      onError(err) {
        failed(err);
      },
    };
  }

  function startTus(metadata, previous) {
    const upload = new tus.Upload(session.file, uploadOptions(metadata));
    if (previous) upload.resumeFromPreviousUpload(previous);
    session.upload = upload;
    session.uploadUrl = previous ? previous.uploadUrl : null;
    session.resumable = false;
    root.dataset.resumedFrom = '';
    resetProgress();
    root.dataset.size = String(session.file.size);
    setState('uploading');
    say(previous ? `Resuming the upload of ${session.file.name}…` : `Uploading ${session.file.name}…`);
    upload.start();
  }

  async function begin() {
    clearError();
    resultBox.hidden = true;
    const file = session.file;
    if (!file) {
      showError('Choose a file first.');
      fileInput.focus();
      return;
    }
    if (!currentToken()) {
      showError('Paste the upload token first.');
      tokenInput.focus();
      return;
    }
    const pasted = parseExpected(expectedInput.value);
    if (pasted === null) {
      showError('The expected checksum is not a SHA-256: give 64 hex digits, or sha256: and them.');
      expectedInput.focus();
      return;
    }
    uploadButton.disabled = true;
    await session.lookup;

    const previous = session.previous;
    if (previous) {
      const sent = (previous.metadata && previous.metadata.checksum) || '';
      session.expected = sent;
      root.dataset.expectedDigest = sent;
      if (pasted && pasted !== sent) {
        say(
          `The checksum of this upload was fixed when it was created (${sent || 'none'}); the ` +
            'value given now is not sent. Start over to use it.',
        );
      }
      previousBox.hidden = true;
      startTus(previous.metadata || {}, previous);
      return;
    }

    let expected = pasted;
    if (computeBox.checked) {
      const computed = await hashFile(file);
      if (computed === null) return;
      if (pasted && pasted !== computed) {
        setState('error');
        root.dataset.errorStatus = '';
        showError(
          `The file's SHA-256 is ${computed}, not the expected ${pasted}. Nothing was sent: ` +
            'check that this is the right file, or the expected value.',
        );
        say('Stopped: the file does not match the expected checksum.');
        return;
      }
      expected = computed;
    }
    session.expected = expected;
    root.dataset.expectedDigest = expected;
    const metadata = { filename: file.name, filetype: file.type || 'application/octet-stream' };
    if (expected) metadata.checksum = expected;
    startTus(metadata, null);
  }

  /** `sha256:HEX` of `file`, or null when stopped or unreadable. */
  async function hashFile(file) {
    const controller = new AbortController();
    session.hashing = controller;
    resetProgress();
    setState('hashing');
    say(`Computing the SHA-256 of ${file.name} in the browser…`);
    const started = performance.now();
    try {
      const hex = await CdiSha256.hashBlob(file, {
        signal: controller.signal,
        onProgress(done, total) {
          const pct = percent(done, total);
          progressBar.value = pct;
          progressBar.setAttribute('aria-valuetext', `hashing, ${pct.toFixed(0)} percent`);
          const seconds = (performance.now() - started) / 1000;
          const speed = seconds > 0 ? done / seconds : 0;
          progressText.textContent =
            `Computing SHA-256: ${bytes(done)} of ${bytes(total)} (${pct.toFixed(1)} %, ` +
            `${bytes(speed)}/s)`;
        },
      });
      say(`SHA-256 of ${file.name}: sha256:${hex}.`);
      return `sha256:${hex}`;
    } catch (e) {
      if (e && e.name === 'AbortError') return null;
      setState('error');
      showError(`The file could not be read to compute its checksum: ${e && e.message ? e.message : e}`);
      say('Stopped: the file could not be read.');
      return null;
    } finally {
      session.hashing = null;
    }
  }

  function finished(lastResponse) {
    const file = session.file;
    const size = file ? file.size : 0;
    root.dataset.offset = String(size);
    showProgress(size, size);
    $('figure-eta').textContent = '—';
    const digest = serverDigest(lastResponse);
    root.dataset.serverDigest = digest;
    serverDigestOut.textContent = digest || 'not reported';
    expectedDigestOut.textContent = session.expected || 'none given';
    let match = 'unknown';
    let verdict;
    if (digest && session.expected) {
      match = digest === session.expected ? 'yes' : 'no';
      verdict =
        match === 'yes'
          ? 'They match: the server verified the whole upload against the expected SHA-256.'
          : 'They differ. The server should have refused this upload; do not use the volume.';
    } else if (digest) {
      verdict = "No checksum was given: compare the server's SHA-256 with the image's published one.";
    } else {
      verdict =
        'The server did not report its digest (its final answer was lost; the upload still ' +
        (session.expected ? 'was verified against the expected SHA-256 before it completed).' : 'completed).');
    }
    root.dataset.digestMatch = match;
    digestVerdict.textContent = verdict;
    resultText.textContent =
      `Upload complete: all ${bytes(size)} of ${file ? file.name : 'the file'} reached the volume. ` +
      "The upload pod now finishes and exits, and the DataVolume becomes Succeeded. To upload " +
      'again, create a new DataVolume (and get a new token).';
    resultBox.hidden = false;
    setState('done');
    uploadButton.disabled = true;
    say(
      `Upload complete: ${bytes(size)} sent and stored${match === 'yes' ? ', checksum verified' : ''}. ` +
        'A later upload needs a new DataVolume.',
    );
  }

  function failed(err) {
    const failure = describeFailure(err);
    root.dataset.errorStatus = String(failure.status);
    session.resumable = failure.resumable && Boolean(session.upload && uploadUrl());
    if (!failure.resumable) {
      // The server has nothing to resume (a refused or vanished upload): start over next time.
      forgetStoredUploads(session.file);
    }
    setState('error');
    showError(failure.text, failure.serverText);
    say(
      `Upload failed${failure.status ? ` (${failure.status})` : ''}` +
        `${session.resumable ? '; Resume continues it' : ''}.`,
    );
  }

  function pause() {
    if (!session.upload) return;
    session.upload.abort(false);
    setState('paused');
    session.samples = [];
    $('figure-speed').textContent = '—';
    $('figure-eta').textContent = '—';
    say(
      `Paused at ${bytes(Number(root.dataset.sent))}. The server keeps what it received; Resume ` +
        'continues from there, also after reloading this page.',
    );
  }

  /** Where the current upload is on the server, if it was created. */
  function uploadUrl() {
    return (session.upload && session.upload.url) || session.uploadUrl;
  }

  function resume() {
    if (!session.upload) return;
    if (!session.upload.url && session.uploadUrl) {
      // Continue the same upload rather than create another (see `uploadUrl` above).
      session.upload.resumeFromPreviousUpload({ uploadUrl: session.uploadUrl, urlStorageKey: null });
    }
    clearError();
    session.resumable = false;
    session.samples = [];
    setState('uploading');
    say(`Resuming the upload of ${session.file.name}…`);
    session.upload.start();
  }

  async function cancel() {
    clearError();
    if (session.hashing) {
      session.hashing.abort();
      resetProgress();
      setState('cancelled');
      say('Cancelled before anything was sent.');
      return;
    }
    const upload = session.upload;
    setState('cancelled');
    cancelButton.disabled = true;
    say('Cancelling: asking the server to remove the partial upload…');
    try {
      if (upload) {
        // Stop sending first; then end it on the server (when it was created at all).
        const url = uploadUrl();
        await upload.abort(false);
        if (url) await terminate(url);
      } else if (session.previous) {
        await terminatePrevious();
      }
      say('Cancelled: the partial upload was removed from the server. You can upload again.');
    } catch (err) {
      const failure = describeFailure(err);
      showError(`The server could not remove the partial upload. ${failure.text}`, failure.serverText);
      say('Cancelled here; the server may still hold the partial upload until its pod restarts.');
    }
    await forgetStoredUploads(session.file);
    session.upload = null;
    session.uploadUrl = null;
    session.previous = null;
    previousBox.hidden = true;
    root.dataset.previous = 'none';
    resetProgress();
    setState('cancelled');
  }

  /** Options for ending an upload on the server (tus termination, `DELETE`). */
  function terminateOptions() {
    return {
      retryDelays: [0, 1000, 2000, 4000],
      onBeforeRequest(request) {
        request.setHeader('Authorization', `Bearer ${currentToken()}`);
      },
      // The server may still hold the upload for a request being cut (423), or not be ready.
      onShouldRetry(err) {
        const status = err.originalResponse ? err.originalResponse.getStatus() : 0;
        return status === 0 || status === 423 || status >= 500;
      },
    };
  }

  /** Ends the upload at `url` on the server; one that is already gone counts as ended. */
  async function terminate(url) {
    try {
      await tus.Upload.terminate(url, terminateOptions());
    } catch (err) {
      if (describeFailure(err).status !== 404) throw err;
    }
  }

  async function terminatePrevious() {
    const previous = session.previous;
    if (!previous) return;
    await terminate(previous.uploadUrl);
    await urlStorage().removeUpload(previous.urlStorageKey);
  }

  async function startOver() {
    clearError();
    startOverButton.disabled = true;
    say('Removing the earlier upload from the server…');
    try {
      await terminatePrevious();
      say('The earlier upload was removed. Upload starts a new one.');
    } catch (err) {
      const failure = describeFailure(err);
      showError(`The earlier upload could not be removed. ${failure.text}`, failure.serverText);
      await forgetStoredUploads(session.file);
    }
    session.previous = null;
    previousBox.hidden = true;
    root.dataset.previous = 'none';
    startOverButton.disabled = false;
    setState(root.dataset.state === 'done' ? 'done' : 'idle');
  }

  // ---------------------------------------------------------------------------------------
  // Wiring.

  function fileChosen() {
    session.file = fileInput.files && fileInput.files.length ? fileInput.files[0] : null;
    session.upload = null;
    session.uploadUrl = null;
    session.resumable = false;
    clearError();
    resultBox.hidden = true;
    resetProgress();
    root.dataset.size = session.file ? String(session.file.size) : '0';
    root.dataset.serverDigest = '';
    root.dataset.digestMatch = '';
    root.dataset.resumedFrom = '';
    setState('idle');
    if (session.file) {
      say(`${session.file.name}: ${bytes(session.file.size)}.${currentToken() ? '' : ' Now paste the token.'}`);
    }
    lookForPrevious();
  }

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    if (!uploadButton.disabled) begin();
  });
  fileInput.addEventListener('change', fileChosen);
  tokenInput.addEventListener('input', () => {
    rememberToken();
    describeToken();
    if (root.dataset.state === 'idle' || root.dataset.state === 'cancelled') {
      setState(root.dataset.state);
    }
  });
  tokenInput.addEventListener('change', () => {
    // The volume is part of the fingerprint, and the server's offset needs the token.
    if (session.file && (root.dataset.state === 'idle' || root.dataset.state === 'cancelled')) {
      lookForPrevious();
    }
  });
  showToken.addEventListener('change', () => {
    tokenInput.type = showToken.checked ? 'text' : 'password';
  });
  pauseButton.addEventListener('click', pause);
  resumeButton.addEventListener('click', resume);
  cancelButton.addEventListener('click', cancel);
  startOverButton.addEventListener('click', startOver);

  takeTokenFromFragment();
  recallToken();
  describeToken();
  // A browser may restore the chosen file on reload; take it as chosen.
  if (fileInput.files && fileInput.files.length) fileChosen();
  else setState('idle');
  root.dataset.ready = 'true';
})();
