// markdown.js: the Markdown that models write, rendered as DOM nodes.
// Model output is never parsed as HTML: every piece of it becomes a text
// node or an attribute we set ourselves, so a tag in an answer shows as
// text. Links keep only http, https and mailto URLs; images become links
// (the page loads nothing from elsewhere). It renders text that is still
// streaming: an unclosed code fence runs to the end.

// render returns a DocumentFragment for the Markdown text.
export function render(text) {
  const frag = document.createDocumentFragment();
  blocks(text.replace(/\r\n?/g, "\n").split("\n"), frag);
  return frag;
}

function el(tag, children, className) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (children) e.append(...children);
  return e;
}

const fenceRE = /^ {0,3}(`{3,}|~{3,})\s*([\w+#.-]*)/;
const headingRE = /^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$/;
const hrRE = /^ {0,3}([-*_])(\s*\1){2,}\s*$/;
const quoteRE = /^ {0,3}> ?/;
const itemRE = /^( *)([-*+]|\d{1,9}[.)])\s+/;
const tableSepRE = /^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$/;

function startsBlock(line) {
  return fenceRE.test(line) || headingRE.test(line) || hrRE.test(line) || quoteRE.test(line) || itemRE.test(line);
}

// blocks appends the block elements of lines to parent.
function blocks(lines, parent) {
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    let m;
    if (line.trim() === "") {
      i++;
    } else if ((m = fenceRE.exec(line))) {
      const fence = m[1];
      const body = [];
      for (i++; i < lines.length; i++) {
        const close = lines[i].trim();
        if (close.startsWith(fence) && close.replaceAll(fence[0], "") === "") break;
        body.push(lines[i]);
      }
      i++; // the closing fence, or past the end
      const code = el("code", [body.join("\n")]);
      if (m[2]) code.dataset.lang = m[2];
      const pre = el("pre", [code]);
      if (m[2]) pre.dataset.lang = m[2];
      parent.append(pre);
    } else if ((m = headingRE.exec(line))) {
      // An answer's # is a section, not the page's title: h3 to h6.
      parent.append(el("h" + Math.min(6, m[1].length + 2), inline(m[2])));
      i++;
    } else if (hrRE.test(line)) {
      parent.append(el("hr"));
      i++;
    } else if (quoteRE.test(line)) {
      const inner = [];
      while (i < lines.length && quoteRE.test(lines[i])) inner.push(lines[i++].replace(quoteRE, ""));
      const q = el("blockquote");
      blocks(inner, q);
      parent.append(q);
    } else if ((m = itemRE.exec(line))) {
      i = list(lines, i, m, parent);
    } else if (line.includes("|") && i + 1 < lines.length && tableSepRE.test(lines[i + 1]) && lines[i + 1].includes("-")) {
      i = table(lines, i, parent);
    } else {
      const para = [];
      while (i < lines.length && lines[i].trim() !== "" && (para.length === 0 || !startsBlock(lines[i]))) para.push(lines[i++]);
      const p = el("p");
      para.forEach((l, k) => {
        if (k > 0) p.append(el("br"));
        p.append(...inline(l.trim()));
      });
      parent.append(p);
    }
  }
}

// list appends the list that starts at lines[i] (matched by m) and returns
// the index after it. An item holds the lines indented under it, which may
// be blocks of their own (a nested list, code).
function list(lines, i, m, parent) {
  const indent = m[1].length;
  const ordered = /\d/.test(m[2]);
  const l = el(ordered ? "ol" : "ul");
  if (ordered && parseInt(m[2], 10) !== 1) l.start = parseInt(m[2], 10);
  while (i < lines.length) {
    const im = itemRE.exec(lines[i]);
    if (!im || im[1].length !== indent || /\d/.test(im[2]) !== ordered) break;
    const width = im[0].length;
    const body = [lines[i].slice(width)];
    for (i++; i < lines.length; i++) {
      const next = lines[i];
      if (next.trim() === "") {
        // A blank line ends the item unless indented text follows.
        if (i + 1 < lines.length && /^\s{2,}\S/.test(lines[i + 1]) && !itemRE.test(lines[i + 1].slice(indent))) {
          body.push("");
          continue;
        }
        if (i + 1 < lines.length && itemRE.test(lines[i + 1]) && itemRE.exec(lines[i + 1])[1].length >= indent) continue;
        break;
      }
      const lead = next.length - next.trimStart().length;
      if (lead <= indent && (itemRE.test(next) || startsBlock(next))) break;
      body.push(lead > indent ? next.slice(Math.min(lead, width)) : next);
    }
    const li = el("li");
    const tmp = document.createDocumentFragment();
    blocks(body, tmp);
    // A simple item is its text, not a paragraph inside the item.
    if (tmp.childNodes.length === 1 && tmp.firstChild.nodeName === "P") li.append(...tmp.firstChild.childNodes);
    else li.append(tmp);
    l.append(li);
  }
  parent.append(l);
  return i;
}

function cells(line) {
  let s = line.trim();
  if (s.startsWith("|")) s = s.slice(1);
  if (s.endsWith("|") && !s.endsWith("\\|")) s = s.slice(0, -1);
  return s.split(/(?<!\\)\|/).map((c) => c.trim().replaceAll("\\|", "|"));
}

function table(lines, i, parent) {
  const head = cells(lines[i]);
  const t = el("table");
  t.append(el("thead", [el("tr", head.map((c) => el("th", inline(c))))]));
  const body = el("tbody");
  for (i += 2; i < lines.length && lines[i].includes("|") && lines[i].trim() !== ""; i++) {
    body.append(el("tr", cells(lines[i]).map((c) => el("td", inline(c)))));
  }
  t.append(body);
  parent.append(el("div", [t], "table-wrap"));
  return i;
}

// The inline syntax, earliest match first: an escape, a code span, strong,
// emphasis, strikethrough, a link or image, a bare URL.
const inlineRE = new RegExp(
  [
    /\\([!-\/:-@[-`{-~])/.source,
    /(`+)([^`]|[^`][\s\S]*?[^`])\2(?!`)/.source,
    /\*\*(?=\S)([\s\S]*?\S)\*\*/.source,
    /(?<![\w_])__(?=\S)([\s\S]*?\S)__(?![\w_])/.source,
    /\*(?=[^\s*])([\s\S]*?[^\s*])\*/.source,
    /(?<![\w_])_(?=[^\s_])([\s\S]*?[^\s_])_(?![\w_])/.source,
    /~~(?=\S)([\s\S]*?\S)~~/.source,
    /(!?)\[([^\]]*)\]\(\s*<?([^\s)>]*)>?(?:\s+"[^"]*")?\s*\)/.source,
    /(https?:\/\/[^\s<>"'`]*[^\s<>"'`.,;:!?)\]])/.source,
  ].join("|"),
  "g",
);

// safeURL returns url when it is an absolute http, https or mailto URL,
// else null: no javascript:, data: or relative links from a model.
export function safeURL(url) {
  if (!/^(https?:\/\/|mailto:)/i.test(url)) return null;
  try {
    const u = new URL(url);
    return ["http:", "https:", "mailto:"].includes(u.protocol) ? u.href : null;
  } catch {
    return null;
  }
}

function link(text, url) {
  const href = safeURL(url);
  if (!href) return [text ? inline(text) : [], url ? " (" + url + ")" : ""].flat();
  const a = el("a", text ? inline(text) : [url]);
  a.href = href;
  a.rel = "noopener noreferrer nofollow";
  a.target = "_blank";
  return [a];
}

// inline returns the nodes of one line or cell of text.
function inline(text) {
  const out = [];
  let last = 0;
  inlineRE.lastIndex = 0;
  for (let m; (m = inlineRE.exec(text)); ) {
    if (m.index > last) out.push(text.slice(last, m.index));
    last = inlineRE.lastIndex;
    const re = inlineRE.lastIndex;
    if (m[1] !== undefined) out.push(m[1]);
    else if (m[2] !== undefined) out.push(el("code", [m[3]]));
    else if (m[4] !== undefined || m[5] !== undefined) out.push(el("strong", inline(m[4] ?? m[5])));
    else if (m[6] !== undefined || m[7] !== undefined) out.push(el("em", inline(m[6] ?? m[7])));
    else if (m[8] !== undefined) out.push(el("del", inline(m[8])));
    else if (m[10] !== undefined) out.push(...link(m[9] === "!" ? m[10] || m[11] : m[10], m[11]));
    else if (m[12] !== undefined) out.push(...link("", m[12]));
    inlineRE.lastIndex = re; // the recursive calls moved it
  }
  if (last < text.length) out.push(text.slice(last));
  return out;
}
