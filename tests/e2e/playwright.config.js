// Playwright drives Debian's Chromium (CHROMIUM) against the console that
// `cargo xtask e2e` serves at CRM_URL; artefacts go to target/e2e/.
import { defineConfig } from '@playwright/test';

const out = process.env.CRM_E2E_OUT || '../../target/e2e';

export default defineConfig({
  testDir: '.',
  testMatch: '*.spec.js',
  timeout: 60_000,
  expect: { timeout: 15_000 },
  workers: 1,
  fullyParallel: false,
  reporter: [['list']],
  outputDir: out + '/results',
  use: {
    baseURL: process.env.CRM_URL,
    viewport: { width: 1280, height: 900 },
    screenshot: 'only-on-failure',
    trace: 'retain-on-failure',
    launchOptions: {
      executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
        '--disable-component-update', '--disable-sync'],
    },
  },
});
