// paykit's cashier console and sandbox wallet in headless Chromium, against a real gateway.
// Started by tests/e2e/browser.rs, which passes the gateway and the people through the
// environment, then decodes the QR codes in the screenshots this script saves.
//
//   PAYKIT_URL, CONSOLE_USERNAME, CONSOLE_PASSWORD, WALLET_PHONE, WALLET_NAME,
//   WALLET_ID_NUMBER, SCREENSHOT_DIR, RESULT_FILE
import { chromium } from "playwright-core";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const base = env("PAYKIT_URL");
const shots = env("SCREENSHOT_DIR");
mkdirSync(shots, { recursive: true });
const result = {};
const PAY_PASSWORD = "258369";

function check(condition, message) {
  if (!condition) throw new Error(message);
}

async function shot(page, name) {
  const path = join(shots, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}

/** No page may show raw JSON, a stack trace or a server error. */
async function looksHuman(page, what) {
  const text = await page.locator("body").innerText();
  check(!/\{\s*"code"\s*:/.test(text), `${what}: raw JSON on the page: ${text.slice(0, 300)}`);
  check(!/panicked|stack backtrace|Internal Server Error|INTERNAL_ERROR/i.test(text), `${what}: an error page: ${text.slice(0, 300)}`);
}

/** Submits a form and expects the message next to `field`, with nothing else changed. */
async function expectFieldError(page, form, field, values, what) {
  for (const [name, value] of Object.entries(values)) {
    await page.fill(`#${form}-${name}`, value);
  }
  await page.click(`form[data-form="${form}"] button[type="submit"]`);
  const error = page.locator(`#${form}-${field}-error`);
  await error.waitFor({ timeout: 10_000 });
  const message = (await error.innerText()).trim();
  check(message.length > 0, `${what}: an empty error message`);
  await looksHuman(page, what);
  console.log(`  ${what}: "${message}"`);
  return message;
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-quic",
    "--no-first-run",
    "--disable-sync",
  ],
});
let console_, wallet;
try {
  const counter = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
  console_ = await counter.newPage();
  wallet = await phone.newPage();

  // ---- the console: log in, and bad input refused next to the field ----
  console.log("console: log in");
  await console_.goto(`${base}/console`);
  await expectFieldError(console_, "login", "password",
    { username: env("CONSOLE_USERNAME"), password: "wrong-password" }, "wrong console password");
  await console_.fill("#login-username", env("CONSOLE_USERNAME"));
  await console_.fill("#login-password", env("CONSOLE_PASSWORD"));
  await console_.click('form[data-form="login"] button');
  await console_.locator('form[data-form="sale"]').waitFor();
  for (const [amount, what] of [["", "empty amount"], ["-5", "negative amount"], ["1.234", "too many decimals"], ["abc", "not a number"], ["0", "zero amount"]]) {
    await expectFieldError(console_, "sale", "amount", { amount }, `sale with ${what}`);
  }
  await shot(console_, "console-sale-refused");

  // ---- the wallet: register, real name, pay password, card, top-up ----
  console.log("wallet: set up");
  await wallet.goto(`${base}/wallet`);
  await expectFieldError(wallet, "register", "password", { phone: env("WALLET_PHONE"), password: "short" }, "too short login password");
  await expectFieldError(wallet, "register", "phone", { phone: "12345", password: "long-enough-1" }, "bad phone number");
  await wallet.fill("#register-phone", env("WALLET_PHONE"));
  await wallet.fill("#register-password", "long-enough-1");
  await wallet.click('form[data-form="register"] button');
  await wallet.locator("#balance").waitFor();
  await wallet.goto(`${base}/wallet/me`);
  await expectFieldError(wallet, "real_name", "id_number", { name: env("WALLET_NAME"), id_number: "123456789012345678" }, "bad resident ID");
  await wallet.fill("#real_name-name", env("WALLET_NAME"));
  await wallet.fill("#real_name-id_number", env("WALLET_ID_NUMBER"));
  await wallet.click('form[data-form="real_name"] button');
  await wallet.locator(".flash").waitFor();
  await expectFieldError(wallet, "pay_password", "pay_password", { pay_password: "123456" }, "weak pay password");
  await wallet.fill("#pay_password-pay_password", PAY_PASSWORD);
  await wallet.click('form[data-form="pay_password"] button');
  await wallet.locator(".flash").waitFor();
  await wallet.goto(`${base}/wallet/cards`);
  await expectFieldError(wallet, "bind", "card_number", { card_number: "6222000000000001" }, "Luhn-invalid card");
  await wallet.fill("#bind-card_number", "6222 0000 0000 0009");
  await wallet.click('form[data-form="bind"] button');
  await wallet.locator(".flash").waitFor();
  await expectFieldError(wallet, "top_up", "amount", { amount: "12.345", pay_password: PAY_PASSWORD }, "top-up with too many decimals");
  await expectFieldError(wallet, "top_up", "pay_password", { amount: "100.00", pay_password: "999999" }, "top-up with a wrong pay password");
  await wallet.fill("#top_up-amount", "3000.00");
  await wallet.fill("#top_up-pay_password", PAY_PASSWORD);
  await wallet.click('form[data-form="top_up"] button');
  await wallet.locator(".flash").waitFor();
  check((await wallet.locator("#balance").innerText()).includes("¥3000.00"), "balance after top-up");

  // ---- a consumer-scanned sale: the console shows a QR, the wallet scans a screenshot of it ----
  console.log("sale: console shows QR");
  await console_.goto(`${base}/console`);
  await console_.fill("#sale-amount", "12.30");
  await console_.fill("#sale-description", "Flat white");
  await console_.click('form[data-form="sale"] button');
  const qr = console_.locator("img.qr");
  await qr.waitFor();
  await console_.waitForFunction(() => document.querySelector("img.qr").naturalWidth > 0);
  result.code_url = await qr.getAttribute("data-code-url");
  result.sale_order_url = console_.url();
  check((await console_.locator(".big-amount").innerText()).trim() === "¥12.30", "QR screen shows ¥12.30");
  await console_.locator(".countdown").filter({ hasText: /\d\d:\d\d/ }).waitFor();
  const qrShot = await shot(console_, "console-qr");
  await looksHuman(console_, "QR screen");

  console.log("sale: wallet uploads the screenshot, pays");
  await wallet.goto(`${base}/wallet/scan`);
  await wallet.setInputFiles("#scan-photo", qrShot);
  await wallet.click('form[data-form="scan"] button');
  await wallet.locator(".preview").waitFor();
  check((await wallet.locator(".preview .big-amount").innerText()).trim() === "¥12.30", "preview shows ¥12.30");
  await expectFieldError(wallet, "pay", "pay_password", { pay_password: "111222" }, "payment with a wrong pay password");
  await shot(wallet, "wallet-pay-refused");
  await wallet.fill("#pay-pay_password", PAY_PASSWORD);
  await wallet.click('form[data-form="pay"] button');
  await wallet.locator(".paid").waitFor();

  console.log("sale: console turns to success by itself");
  await console_.locator(".sale-success").waitFor({ timeout: 15_000 });
  check((await console_.locator(".sale-success .big-amount").innerText()).trim() === "¥12.30", "success shows ¥12.30");
  result.sale_order_number = (await console_.locator(".order-number").innerText()).trim();
  await shot(console_, "console-success");
  await looksHuman(console_, "success screen");

  // ---- a keyboard-wedge micropay, instant ----
  console.log("micropay: payment code typed by a wedge scanner");
  await wallet.goto(`${base}/wallet/code`);
  await wallet.click('form[data-form="enable"] button');
  const digits = wallet.locator(".digits[data-code]");
  await digits.waitFor();
  // Read the code and photograph it inside one 30 s step, so both show the same code.
  await wallet.waitForFunction(() => Number(document.querySelector(".paycode .refresh").textContent) > 5, null, { timeout: 10_000 });
  await wallet.waitForFunction(() => ["img.qr", "img.barcode"].every((s) => document.querySelector(`.paycode ${s}`).naturalWidth > 0));
  const code = await digits.getAttribute("data-code");
  check(/^13\d{16}$/.test(code), `payment code shape: ${code}`);
  result.payment_code = code;
  await shot(wallet, "wallet-paycode");
  await looksHuman(wallet, "payment code screen");

  await console_.goto(`${base}/console`);
  await expectFieldError(console_, "micropay", "auth_code", { amount: "8.80", auth_code: "130000000000000001" }, "misread payment code");
  await console_.fill("#micropay-amount", "8.80");
  await console_.fill("#micropay-auth_code", "");
  await console_.click("#micropay-auth_code");
  await console_.keyboard.type(code, { delay: 5 });
  await console_.keyboard.press("Enter");
  await console_.locator(".sale-success").waitFor({ timeout: 15_000 });
  check((await console_.locator(".sale-success .big-amount").innerText()).trim() === "¥8.80", "micropay success shows ¥8.80");
  await shot(console_, "console-micropay-success");

  // ---- a partial refund from the console ----
  console.log("refund: partial, from the order");
  await expectFieldError(console_, "refund", "amount", { amount: "100.00" }, "refund above the paid amount");
  await console_.fill("#refund-amount", "3.00");
  await console_.click('form[data-form="refund"] button');
  await console_.locator(".flash").waitFor();
  await console_.locator("#refunds").filter({ hasText: "¥3.00" }).waitFor();
  await shot(console_, "console-refund");

  // ---- a micropay above the confirmation threshold: USERPAYING, confirmed in the wallet ----
  console.log("micropay: large, waits for the customer");
  await wallet.evaluate(() => localStorage.clear());
  await wallet.goto(`${base}/wallet/code`);
  await wallet.click('form[data-form="enable"] button');
  await digits.waitFor();
  const code2 = await digits.getAttribute("data-code");
  await console_.goto(`${base}/console`);
  await console_.fill("#micropay-amount", "1200.00");
  await console_.click("#micropay-auth_code");
  await console_.keyboard.type(code2, { delay: 5 });
  await console_.keyboard.press("Enter");
  await console_.locator(".sale-wait").waitFor({ timeout: 15_000 });
  await shot(console_, "console-userpaying");
  await wallet.goto(`${base}/wallet/confirmations`);
  await wallet.locator(".confirmation").waitFor();
  await wallet.fill("#confirm-pay_password", PAY_PASSWORD);
  await wallet.click('form[data-form="confirm"] button');
  await wallet.locator(".flash").waitFor();
  await console_.locator(".sale-success").waitFor({ timeout: 15_000 });
  check((await console_.locator(".sale-success .big-amount").innerText()).trim() === "¥1200.00", "confirmed micropay shows ¥1200.00");

  // ---- a consumer's refund request, answered from the console ----
  console.log("refund request: asked in the wallet, approved in the console");
  await wallet.goto(`${base}/wallet/records`);
  const orderId = new URL(result.sale_order_url).pathname.split("/").pop();
  const record = wallet.locator(`.record[data-order-id="${orderId}"]`);
  await record.locator("summary").click();
  await record.locator("#refund_request-reason").fill("The coffee was cold");
  await record.locator('form[data-form="refund_request"] button').click();
  await wallet.locator(".flash").waitFor();
  await console_.goto(`${base}/console`);
  const request = console_.locator("#refund-requests .request").first();
  await request.waitFor();
  check((await request.innerText()).includes("The coffee was cold"), "the console shows the reason");
  await shot(console_, "console-refund-request");
  await request.locator('button:has-text("Approve refund")').click();
  await console_.locator(".flash").filter({ hasText: "¥12.30" }).waitFor();
  await wallet.goto(`${base}/wallet/records`);
  await wallet.locator(`.record[data-order-id="${orderId}"] .request`).filter({ hasText: "APPROVED" }).waitFor();
  await shot(wallet, "wallet-records");

  // ---- the wallet's money pages: transfer, red packet, bills, freeze ----
  console.log("wallet: transfer, red packet, bills, freeze");
  await wallet.goto(`${base}/wallet/transfers`);
  await expectFieldError(wallet, "transfer", "amount", { to_phone: "13900000000", amount: "-1", pay_password: PAY_PASSWORD }, "negative transfer");
  await wallet.fill("#transfer-to_phone", "13900000000");
  await wallet.fill("#transfer-amount", "5.00");
  await wallet.fill("#transfer-pay_password", PAY_PASSWORD);
  await wallet.click('form[data-form="transfer"] button');
  await wallet.locator(".flash").filter({ hasText: "¥5.00" }).waitFor();
  await wallet.goto(`${base}/wallet/red-packets`);
  await expectFieldError(wallet, "send", "total", { total: "300.00", shares: "3", pay_password: PAY_PASSWORD }, "red packet above ¥200.00");
  await wallet.fill("#send-total", "10.00");
  await wallet.fill("#send-shares", "3");
  await wallet.fill("#send-pay_password", PAY_PASSWORD);
  await wallet.click('form[data-form="send"] button');
  await wallet.locator(".flash").filter({ hasText: "¥10.00" }).waitFor();
  await wallet.goto(`${base}/wallet/bills`);
  await looksHuman(wallet, "bills page");
  await wallet.goto(`${base}/wallet/me`);
  await wallet.click('form[data-form="freeze"] button');
  await wallet.locator('form[data-form="unfreeze"]').waitFor();
  // Which of the four proofs was wrong is not said (that would help a thief guess).
  await wallet.fill("#unfreeze-password", "long-enough-1");
  await wallet.fill("#unfreeze-pay_password", "000000");
  await wallet.fill("#unfreeze-name", env("WALLET_NAME"));
  await wallet.fill("#unfreeze-id_number", env("WALLET_ID_NUMBER"));
  await wallet.click('form[data-form="unfreeze"] button');
  await wallet.locator('form[data-form="unfreeze"] .form-error').waitFor();
  await looksHuman(wallet, "unfreeze refused");
  await wallet.fill("#unfreeze-password", "long-enough-1");
  await wallet.fill("#unfreeze-pay_password", PAY_PASSWORD);
  await wallet.fill("#unfreeze-name", env("WALLET_NAME"));
  await wallet.fill("#unfreeze-id_number", env("WALLET_ID_NUMBER"));
  await wallet.click('form[data-form="unfreeze"] button');
  await wallet.locator('form[data-form="freeze"]').waitFor();
  await wallet.goto(`${base}/wallet`);
  await shot(wallet, "wallet-home");
  await looksHuman(wallet, "wallet home");

  // ---- today's orders and the statement ----
  console.log("orders and statement");
  await console_.goto(`${base}/console?status=SUCCESS`);
  const rows = await console_.locator("#orders tbody tr").count();
  check(rows === 3, `three paid orders today, saw ${rows}`);
  const [download] = await Promise.all([
    console_.waitForEvent("download"),
    console_.click('#statement button'),
  ]);
  const csvPath = join(shots, "statement.csv");
  await download.saveAs(csvPath);
  result.statement = csvPath;
  await shot(console_, "console-orders");

  writeFileSync(env("RESULT_FILE"), JSON.stringify(result, null, 2));
  console.log("browser tests passed");
} catch (e) {
  console.error(`browser test failed: ${e.stack || e}`);
  for (const [name, page] of [["failure-console", console_], ["failure-wallet", wallet]]) {
    if (page) await shot(page, name).catch(() => {});
  }
  process.exitCode = 1;
} finally {
  await browser.close();
}
