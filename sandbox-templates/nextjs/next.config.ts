import { existsSync } from "node:fs";
import type { NextConfig } from "next";
import { PHASE_DEVELOPMENT_SERVER } from "next/constants";

// In the CodeFlux sandbox the dev server tags each JSX element with its source location,
// so an element picked in the preview names its file and line. Builds, and copies of this
// app outside the sandbox, do without.
const TAGGER = "/usr/local/lib/codeflux-tagger.cjs";

const nextConfig: NextConfig = {
  // Previews are served through CodeFlux's proxy under other host names.
  allowedDevOrigins: ["*.localhost", "localhost", "127.0.0.1"],
  devIndicators: false,
  images: { unoptimized: true },
  // PGlite loads its WebAssembly Postgres from its own files at run time: left unbundled.
  serverExternalPackages: ["@electric-sql/pglite"],
};

export default function config(phase: string): NextConfig {
  if (phase !== PHASE_DEVELOPMENT_SERVER || !existsSync(TAGGER)) return nextConfig;
  const tagged = { loaders: [TAGGER] };
  return { ...nextConfig, turbopack: { rules: { "*.tsx": tagged, "*.jsx": tagged } } };
}
