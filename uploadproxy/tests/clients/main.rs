//! Third-party clients resume uploads through the real proxy and the real upload server while
//! a relay cuts their connections at random offsets: `cdictl upload`, tuspy, and the proxy's
//! page driven by tus-js-client in headless Chromium. Each image lands on the volume byte for
//! byte, and the upload server exits 0 after it.
//!
//! The tools come from Debian (chromium, python3, node) and the registries (tuspy 1.1.0 from
//! PyPI; playwright-core and tus-js-client from npm, `npm ci` in `uploadproxy/tests/browser`
//! and `uploadproxy/page`); `.ci/run` installs them, and a test whose tool is missing fails
//! saying what to install. Random choices print their seed (`CDI_TEST_SEED` repeats one).

#[path = "../shared/objects.rs"]
mod objects;

mod browser;
mod cdictl;
mod stack;
mod support;
mod tuspy;
