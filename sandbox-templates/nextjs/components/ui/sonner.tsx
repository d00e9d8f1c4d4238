"use client";

import { Toaster as Sonner, type ToasterProps } from "sonner";

/** Toasts: render <Toaster /> once (the layout does) and call `toast("…")` from "sonner". */
function Toaster(props: ToasterProps) {
  return (
    <Sonner
      theme="system"
      className="toaster group"
      style={
        {
          "--normal-bg": "var(--popover)",
          "--normal-text": "var(--popover-foreground)",
          "--normal-border": "var(--border)",
        } as React.CSSProperties
      }
      {...props}
    />
  );
}

export { Toaster };
