// Sandbox wallet: the payment code, computed here from the device secret as wire.md says:
// "13" + device number (8) + RFC 4226-truncated HMAC-SHA256 of the 30 s step (7) + Luhn.
"use strict";

const STEP_SECS = 30;

function base64Bytes(b64) {
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
}

function luhnCheckDigit(payload) {
  let sum = 0;
  for (let i = 0; i < payload.length; i++) {
    let d = payload.charCodeAt(payload.length - 1 - i) - 48;
    if (i % 2 === 0) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return (10 - (sum % 10)) % 10;
}

async function oneTimeCode(secret, step) {
  const key = await crypto.subtle.importKey("raw", secret, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const msg = new DataView(new ArrayBuffer(8));
  msg.setUint32(0, Math.floor(step / 2 ** 32));
  msg.setUint32(4, step >>> 0);
  const h = new Uint8Array(await crypto.subtle.sign("HMAC", key, msg.buffer));
  const o = h[31] & 0x0f;
  const v = ((h[o] & 0x7f) << 24) | (h[o + 1] << 16) | (h[o + 2] << 8) | h[o + 3];
  return String(v % 10_000_000).padStart(7, "0");
}

async function paymentCode(device, unixSecs) {
  const step = Math.floor(unixSecs / STEP_SECS);
  const payload = "13" + String(device.id).padStart(8, "0") + (await oneTimeCode(base64Bytes(device.secret), step));
  return payload + luhnCheckDigit(payload);
}

function startPaymentCode(el) {
  const storageKey = "paykit-device:" + el.dataset.user;
  if (el.dataset.deviceId && el.dataset.deviceSecret) {
    localStorage.setItem(storageKey, JSON.stringify({ id: el.dataset.deviceId, secret: el.dataset.deviceSecret }));
  }
  const saved = localStorage.getItem(storageKey);
  if (!saved) return;
  const enable = document.querySelector('form[data-form="enable"]');
  if (!window.crypto || !crypto.subtle) {
    el.querySelector(".no-crypto").hidden = false;
    return;
  }
  const device = JSON.parse(saved);
  if (enable) enable.hidden = true;
  const area = el.querySelector(".code-area");
  area.hidden = false;
  const digits = el.querySelector(".digits");
  const refresh = el.querySelector(".refresh");
  let shownStep = null;
  const render = async () => {
    const now = Date.now() / 1000;
    const step = Math.floor(now / STEP_SECS);
    if (step !== shownStep) {
      shownStep = step;
      const code = await paymentCode(device, now);
      digits.dataset.code = code;
      digits.textContent = code.replace(/(\d{4})(?=\d)/g, "$1 ");
      el.querySelector("img.qr").src = "/wallet/code/qr.svg?digits=" + code;
      el.querySelector("img.barcode").src = "/wallet/code/barcode.svg?digits=" + code;
    }
    refresh.textContent = String(STEP_SECS - (Math.floor(now) % STEP_SECS));
    setTimeout(render, 1000);
  };
  render();
}

const paycode = document.getElementById("paycode");
if (paycode) startPaymentCode(paycode);
const wrong = document.querySelector(".has-error input, .has-error select");
if (wrong) wrong.focus();
