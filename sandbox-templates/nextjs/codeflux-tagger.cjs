// A Turbopack loader for the sandbox's dev server only (see next.config.ts): it gives every
// JSX element a `data-cf-loc="<file>:<line>:<column>:<name>"` attribute, so that selecting
// an element in CodeFlux's preview names the source that made it. The files on disk are
// never changed, and `next build` does not run this loader.
"use strict";

const path = require("node:path");

// TypeScript is a dev dependency of the app; it parses TSX and JSX without any config.
const ts = require(require.resolve("typescript", { paths: [process.cwd()] }));

const ATTRIBUTE = "data-cf-loc";

// Elements that pass unknown props to nothing React accepts them on.
function untaggable(name) {
  return name === "" || name === "Fragment" || name === "React.Fragment";
}

function tag(source, file) {
  const kind = file.endsWith(".jsx") ? ts.ScriptKind.JSX : ts.ScriptKind.TSX;
  const tree = ts.createSourceFile(file, source, ts.ScriptTarget.Latest, false, kind);
  const insertions = [];
  const visit = (node) => {
    if (ts.isJsxOpeningElement(node) || ts.isJsxSelfClosingElement(node)) {
      const name = node.tagName.getText(tree);
      const already = node.attributes.properties.some(
        (attribute) => ts.isJsxAttribute(attribute) && attribute.name.getText(tree) === ATTRIBUTE,
      );
      if (!untaggable(name) && !already) {
        const start = tree.getLineAndCharacterOfPosition(node.getStart(tree));
        const value = `${file}:${start.line + 1}:${start.character + 1}:${name}`;
        // Right after the tag name (and its type arguments): before any `{...props}`, so a
        // component that spreads its props onto a DOM element shows where it was used.
        const at = node.typeArguments
          ? source.indexOf(">", node.typeArguments.end) + 1
          : node.tagName.end;
        insertions.push([at, ` ${ATTRIBUTE}=${JSON.stringify(value)}`]);
      }
    }
    ts.forEachChild(node, visit);
  };
  visit(tree);
  let out = source;
  for (const [at, text] of insertions.sort((a, b) => b[0] - a[0])) {
    out = out.slice(0, at) + text + out.slice(at);
  }
  return out;
}

module.exports = function codefluxTagger(source) {
  const file = path.relative(process.cwd(), this.resourcePath).split(path.sep).join("/");
  if (file.startsWith("..") || file.split("/").includes("node_modules")) return source;
  try {
    return tag(String(source), file);
  } catch {
    // A file that does not parse is reported by the compiler itself, untouched.
    return source;
  }
};

module.exports.tag = tag;
