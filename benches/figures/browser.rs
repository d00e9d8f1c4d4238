//! What the browser check costs: the time per page (open, watch, screenshot, click the first
//! screen's buttons and links), the whole check of a three-page app with Chromium's start,
//! the sandbox's memory while it runs, and what Chromium adds to the image.

use std::time::Duration;

use uuid::Uuid;

use super::{Table, docker, in_sandbox, median, remove_instance, secs};

const APP: &str = r#"mkdir -p app/counter app/about
cat > app/layout.tsx <<'EOF'
import Link from "next/link";
import "./globals.css";
export default function RootLayout({ children }: { children: React.ReactNode }) {
  return (<html lang="en"><body><nav><Link href="/">Home</Link> <Link href="/counter">Counter</Link> <Link href="/about">About</Link></nav>{children}</body></html>);
}
EOF
cat > app/page.tsx <<'EOF'
export default function Page() { return <main><h1>Habits</h1><p>Track what you do.</p></main>; }
EOF
cat > app/counter/page.tsx <<'EOF'
"use client";
import { useState } from "react";
export default function Page() {
  const [count, setCount] = useState(0);
  return <main><h1>Count: {count}</h1><button onClick={() => setCount(count + 1)}>Add one</button><button onClick={() => setCount(0)}>Reset</button></main>;
}
EOF
cat > app/about/page.tsx <<'EOF'
export default function Page() { return <main><h1>About</h1><p>A small app.</p></main>; }
EOF
(npx next dev --turbopack -H 0.0.0.0 -p 3000 > /tmp/dev.log 2>&1 &)
for i in $(seq 240); do curl -s -o /dev/null http://127.0.0.1:3000/ && break; sleep 0.5; done
for route in / /counter /about; do curl -s -o /dev/null "http://127.0.0.1:3000$route"; done"#;

const CHECK: &str = r#"s=$(date +%s%N); node /opt/codeflux/browser/check.cjs '{"base":"http://127.0.0.1:3000","routes":["/","/counter","/about"],"shots":"/tmp/shots"}' | tail -1; e=$(date +%s%N); echo $(( (e - s) / 1000000 ))"#;

pub async fn browser_check(table: &mut Table, image: &str) {
    let instance = format!("bench-{}", Uuid::now_v7().simple());
    let container = docker(&[
        "run",
        "-d",
        "--label",
        &format!("codeflux.instance={instance}"),
        "--memory",
        "2g",
        "--entrypoint",
        "sleep",
        image,
        "infinity",
    ]);
    let in_app = |script: &str| in_sandbox(&container, script);
    let browser_mb = in_app(
        "du -scm /usr/lib/chromium /usr/share/chromium /opt/codeflux/browser 2>/dev/null | tail -1 | cut -f1",
    );
    in_app(APP);
    let (mut whole, mut per_page, mut clicks) = (Vec::new(), Vec::new(), 0);
    let mut peak_mb = 0.0_f64;
    for _ in 0..5 {
        // The sandbox's memory while the check runs, sampled from beside it.
        let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let sampler = {
            let sampling = sampling.clone();
            let container = container.clone();
            std::thread::spawn(move || {
                let mut peak = 0.0_f64;
                while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                    peak = peak.max(super::publish::memory_mib(&container));
                }
                peak
            })
        };
        let out = in_app(CHECK);
        sampling.store(false, std::sync::atomic::Ordering::Relaxed);
        peak_mb = peak_mb.max(sampler.join().unwrap());
        let mut lines = out.lines().filter(|line| !line.trim().is_empty());
        let report: serde_json::Value =
            serde_json::from_str(lines.next().expect("a report")).expect("the report is JSON");
        let total: u64 = lines.next().unwrap().trim().parse().unwrap();
        assert_eq!(report["available"], true, "{report}");
        clicks = 0;
        for page in report["pages"].as_array().unwrap() {
            assert_eq!(page["problems"].as_array().map(Vec::len), Some(0), "{page}");
            per_page.push(Duration::from_millis(page["ms"].as_u64().unwrap()));
            clicks += page["clicks"].as_u64().unwrap();
        }
        whole.push(Duration::from_millis(total));
    }
    let idle_mb = super::publish::memory_mib(&container);
    docker(&["rm", "-f", &container]);
    table.row(
        "Browser check, per page",
        secs(median(per_page)),
        "open, wait until the network is idle, screenshot, click each first-screen button and link (3 nav links, and 2 buttons on one page) and reload after each navigation; median of 15 pages",
    );
    table.row(
        "Browser check of a 3-page app",
        format!("{} ({clicks} clicks)", secs(median(whole))),
        "the whole `check.cjs` run in the sandbox, Chromium's start and exit included, pages compiled before; median of 5",
    );
    table.row(
        "Sandbox memory: dev server idle / peak during the check",
        format!("{idle_mb:.0} MiB / {peak_mb:.0} MiB"),
        "`docker stats` after the runs, and its highest reading while they ran",
    );
    table.row(
        "Chromium and its driver in the image",
        format!("{browser_mb} MiB"),
        "Debian's chromium-headless-shell (`/usr/lib/chromium`, `/usr/share/chromium`) and puppeteer-core with source-map-js; shared libraries it pulls in are not counted",
    );
    remove_instance(&instance);
}
