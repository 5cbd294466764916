// Cashier console: live status of a sale, the QR's countdown, printing.
"use strict";

function poll(el) {
  const url = el.dataset.poll;
  const shown = el.dataset.status;
  const tick = async () => {
    try {
      const res = await fetch(url, { credentials: "same-origin", cache: "no-store" });
      if (res.ok) {
        const body = await res.json();
        if (body.status && body.status !== shown) {
          location.reload();
          return;
        }
      }
    } catch (_) {
      // The network blinked; try again on the next tick.
    }
    setTimeout(tick, 1000);
  };
  setTimeout(tick, 1000);
}

function countdown(el) {
  const expireAt = Number(el.dataset.expireAt);
  const pad = (n) => String(n).padStart(2, "0");
  const render = () => {
    const left = Math.max(0, Math.floor(expireAt - Date.now() / 1000));
    const h = Math.floor(left / 3600);
    const m = Math.floor((left % 3600) / 60);
    const s = left % 60;
    el.textContent = h > 0 ? `${h}:${pad(m)}:${pad(s)}` : `${pad(m)}:${pad(s)}`;
    if (left === 0) {
      setTimeout(() => location.reload(), 1500);
      return;
    }
    setTimeout(render, 1000);
  };
  render();
}

document.querySelectorAll("[data-poll]").forEach(poll);
document.querySelectorAll(".countdown[data-expire-at]").forEach(countdown);
document.querySelectorAll("[data-print]").forEach((b) => b.addEventListener("click", () => window.print()));
// After a refused form, put the cursor in the field to fix.
const wrong = document.querySelector(".has-error input, .has-error select");
if (wrong) wrong.focus();
