// wharf's UI script: copy buttons and search as you type. Loaded from /ui/static/app.js
// (the Content-Security-Policy allows no inline script). Pages work without it.
"use strict";

document.addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-copy]");
  if (!button) return;
  const text = button.getAttribute("data-copy");
  try {
    await navigator.clipboard.writeText(text);
    flash(button, "Copied");
  } catch (_) {
    // No clipboard (plain HTTP on another host): select the text for Ctrl+C instead.
    const code = button.parentElement.querySelector("code");
    if (code) window.getSelection().selectAllChildren(code);
    flash(button, "Press Ctrl+C");
  }
});

function flash(button, label) {
  const before = button.textContent;
  button.textContent = label;
  button.setAttribute("data-copied", "true");
  setTimeout(() => {
    button.textContent = before;
    button.removeAttribute("data-copied");
  }, 1500);
}

// Search as you type: fetch the same page for the query and swap in its list.
const search = document.querySelector("input[data-live-search]");
if (search) {
  const target = search.getAttribute("data-live-search");
  let timer = null;
  let latest = 0;
  search.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      const seq = ++latest;
      const url = new URL(window.location.href);
      url.searchParams.set("q", search.value);
      url.searchParams.delete("page");
      const response = await fetch(url, { headers: { Accept: "text/html" } });
      if (!response.ok || seq !== latest) return;
      const doc = new DOMParser().parseFromString(await response.text(), "text/html");
      const fresh = doc.getElementById(target);
      const current = document.getElementById(target);
      if (fresh && current) current.replaceWith(document.adoptNode(fresh));
      history.replaceState(null, "", url);
    }, 150);
  });
}

// "/" focuses the search box, as on many sites; Escape leaves it.
document.addEventListener("keydown", (event) => {
  if (!search) return;
  if (event.key === "/" && document.activeElement !== search) {
    event.preventDefault();
    search.focus();
  } else if (event.key === "Escape" && document.activeElement === search) {
    search.blur();
  }
});
