import type { NextConfig } from "next";

const nextConfig: NextConfig = {
  // Previews are served through CodeFlux's proxy under other host names.
  allowedDevOrigins: ["*.localhost", "localhost", "127.0.0.1"],
  devIndicators: false,
  images: { unoptimized: true },
};

export default nextConfig;
