//! Lifecycle: the first load, hot reloads, leases across restarts, shutdown, memory settings.

use super::*;

/// Transparent huge pages are off for petdns's own memory (a fault on one zeroes 2 MiB: the
/// cold start at 100,000 pods went from 2.2 s to 0.8 s without them) but allowed for the UDP
/// answer caches, which advise them, unless `MIMALLOC_ALLOW_THP` asks for them everywhere.
/// What the kernel reports: `THP_enabled` in `/proc/<pid>/status` (0 where a kernel before 6.18
/// knows no exception and THP is off for all of the process) and, in `/proc/<pid>/smaps`, the
/// mappings advised for huge pages (`hg`): the answer caches, one per UDP socket, each its
/// table and ring (3 MiB of ring and 64 Ki slots here: 3,584 kB), and nothing of the allocator.
#[test]
fn transparent_huge_pages_only_for_the_answer_caches_unless_asked_for() {
    let status = |s: &Server, key: &str| -> String {
        let status = std::fs::read_to_string(format!("/proc/{}/status", s.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("the kernel reports {key} in /proc/<pid>/status"))
    };
    // The size in kB of every mapping advised for huge pages.
    let advised = |s: &Server| -> Vec<u64> {
        let smaps = std::fs::read_to_string(format!("/proc/{}/smaps", s.pid())).unwrap();
        let mut size = 0;
        let mut out = Vec::new();
        for line in smaps.lines() {
            if let Some(kb) = line.strip_prefix("Size:") {
                size = kb.trim().trim_end_matches(" kB").parse().unwrap();
            } else if let Some(flags) = line.strip_prefix("VmFlags:")
                && flags.split_whitespace().any(|f| f == "hg")
            {
                out.push(size);
            }
        }
        out
    };
    let args = ["--udp-sockets", "2", "--answer-cache-mib", "3"];
    let s = Options::new(&[&example("kubia.yaml")]).args(&args).start();
    assert_eq!(s.dig(&["A", KUBIA_SET]).status, "NOERROR");
    match status(&s, "THP_enabled:").as_str() {
        // Off for all but the advised caches.
        "1" => assert_eq!(advised(&s), [3584, 3584]),
        // A kernel without the exception: off for everything.
        "0" => {}
        other => panic!("THP_enabled: {other}"),
    }
    let s = Options::new(&[&example("kubia.yaml")])
        .args(&args)
        .env("MIMALLOC_ALLOW_THP", "1")
        .start();
    assert_eq!(status(&s, "THP_enabled:"), "1");
    let sizes = advised(&s);
    assert!(
        sizes.iter().any(|&kb| kb != 3584),
        "the allocator advises its own memory too: {sizes:?}"
    );
}

#[test]
fn servfail_and_not_ready_until_the_first_valid_load() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kubia.yaml");
    std::fs::write(&file, read(&fixture("broken.yaml"))).unwrap();
    let s = Options::new(&[&file]).not_ready().start();
    let rejected = s.wait_message("manifest rejected; the last good state keeps serving", 0);
    assert_eq!(rejected["line"], 20, "{rejected}");
    assert_eq!(
        s.get("/readyz").unwrap().0,
        503,
        "not ready before the first load"
    );
    assert_eq!(s.get("/healthz").unwrap().0, 200, "alive all the same");
    for name in [KUBIA_SET, "nope.cluster.local", "cluster.local"] {
        let d = s.dig(&["A", name]);
        assert_eq!(d.status, "SERVFAIL", "{d}");
        assert!(!d.aa(), "{d}");
    }
    let d = s.dig(&["-x", "192.0.2.1"]);
    assert_eq!(d.status, "SERVFAIL", "nothing may cache a false miss\n{d}");
    assert_eq!(s.dig(&["A", "example.org"]).status, "REFUSED");

    replace_file(&file, &read(&example("kubia.yaml")));
    s.wait_message("snapshot published", 0);
    s.wait_ready();
    let d = s.dig(&["A", KUBIA_SET]);
    assert_eq!(d.answers("A"), ["192.0.2.1", "192.0.2.2"], "{d}");
    let (status, body) = s.get("/readyz").unwrap();
    assert_eq!((status, body.trim()), (200, "ready"));
}

/// The seed's story: `replicas: 2` edited to 3 in an editor, `kubia-2` answered within 1 s.
#[test]
fn hot_reload_scale_up_is_answered_within_one_second() {
    let dir = tempfile::tempdir().unwrap();
    let [file] = copy_into(dir.path(), &[example("kubia.yaml")])
        .try_into()
        .unwrap();
    let s = Server::new(&[&file]);
    let kubia2 = "kubia-2.kubia.default.svc.cluster.local.";
    s.dig(&["A", kubia2]).assert_negative("NXDOMAIN");
    let generation = s.generation();
    let reloads = s.metric("petdns_reloads_total").unwrap_or(0.0);

    let text = read(&file);
    assert!(text.contains("replicas: 2"), "{text}");
    let edited = Instant::now();
    replace_file(&file, &text.replace("replicas: 2", "replicas: 3"));
    let q = query(31, kubia2, RecordType::A, None);
    let answered = poll(Duration::from_secs(5), || {
        let reply = udp_exchange(s.dns, &q.to_vec().unwrap(), Duration::from_millis(200))?;
        let m = Message::from_vec(&reply).ok()?;
        (!m.answers.is_empty()).then(|| edited.elapsed())
    })
    .unwrap_or_else(|| panic!("kubia-2 never answered\n{}", s.log_dump()));
    assert!(
        answered < Duration::from_secs(1),
        "kubia-2 answered after {answered:?}"
    );
    eprintln!("kubia-2 answered {answered:?} after the edit");

    let d = s.dig(&["A", kubia2]);
    assert_eq!(d.answers("A"), ["192.0.2.3"], "{d}");
    let d = s.dig(&["SRV", KUBIA_SET]);
    assert_eq!(d.answers("SRV").len(), 3, "{d}");
    assert!(
        d.answers("SRV").iter().all(|r| r.starts_with("0 33 80 ")),
        "{d}"
    );
    assert!(s.generation() > generation, "{}", s.log_dump());
    assert_eq!(
        s.metric("petdns_snapshot_generation"),
        Some(s.generation() as f64)
    );
    assert!(s.metric("petdns_reloads_total").unwrap() > reloads);
}

/// The answer cache of a UDP loop: a question asked again is answered from it (the hit
/// counter moves, the answer is the same), and an edit is answered at once, never from the
/// cache; `--answer-cache-mib 0` turns it off.
#[test]
fn answers_cached_over_udp_follow_every_reload() {
    let dir = tempfile::tempdir().unwrap();
    let [file] = copy_into(dir.path(), &[example("kubia.yaml")])
        .try_into()
        .unwrap();
    // One UDP socket, so that every question meets the same cache.
    let s = Options::new(&[&file]).args(&["--udp-sockets", "1"]).start();
    let hits = |s: &Server| {
        s.metric("petdns_dns_answer_cache_hits_total")
            .unwrap_or(0.0)
    };
    let srv = || {
        let d = s.dig(&["SRV", KUBIA_SET]);
        let mut a = d.answers("SRV");
        a.sort();
        a
    };
    let first = srv();
    assert_eq!(first.len(), 2, "{first:?}");
    let before = hits(&s);
    assert_eq!(srv(), first);
    assert_eq!(hits(&s), before + 1.0, "{}", s.metrics());
    s.dig(&["A", "kubia-2.kubia.default.svc.cluster.local."])
        .assert_negative("NXDOMAIN");

    let generation = s.generation();
    replace_file(&file, &read(&file).replace("replicas: 2", "replicas: 3"));
    poll(Duration::from_secs(5), || {
        (s.generation() > generation).then_some(())
    })
    .unwrap_or_else(|| panic!("no reload\n{}", s.log_dump()));
    // The first question after the new snapshot is answered from it.
    assert_eq!(srv().len(), 3);
    let d = s.dig(&["A", "kubia-2.kubia.default.svc.cluster.local."]);
    assert_eq!(d.answers("A"), ["192.0.2.3"], "{d}");

    let off = Options::new(&[&file])
        .args(&["--udp-sockets", "1", "--answer-cache-mib", "0"])
        .start();
    for _ in 0..3 {
        assert_eq!(off.dig(&["SRV", KUBIA_SET]).answers("SRV").len(), 3);
    }
    assert_eq!(hits(&off), 0.0);
    assert_eq!(
        off.metric("petdns_dns_answer_cache_misses_total"),
        Some(0.0)
    );
}

/// An invalid edit is rejected with file and line; the last good state keeps serving.
#[test]
fn invalid_edit_keeps_serving_the_last_good_state() {
    let dir = tempfile::tempdir().unwrap();
    let [file] = copy_into(dir.path(), &[example("kubia.yaml")])
        .try_into()
        .unwrap();
    let s = Server::new(&[&file]);
    let good = read(&file);
    let before = s.dig(&["SRV", KUBIA_SET]);
    assert_eq!(before.answers("SRV").len(), 2, "{before}");
    let replicas_line = good
        .lines()
        .position(|l| l.contains("replicas: 2"))
        .unwrap()
        + 1;
    let rejected = "manifest rejected; the last good state keeps serving";

    // 1. Bad YAML: an unclosed flow sequence.
    replace_file(&file, &good.replace("replicas: 2", "replicas: [3"));
    let log = s.wait_message(rejected, 0);
    assert!(
        log["file"].as_str().unwrap_or("").ends_with("kubia.yaml"),
        "{log}"
    );
    assert!(
        log["line"].as_u64().unwrap_or(0) >= replicas_line as u64,
        "{log}"
    );
    assert!(!log["reason"].as_str().unwrap_or("").is_empty(), "{log}");
    // The source logs the rejection, then counts it: wait for the count.
    let counted = |n: f64| {
        poll(DEADLINE, || {
            (s.metric("petdns_reload_errors_total") == Some(n)).then_some(())
        })
        .unwrap_or_else(|| panic!("reload errors never reached {n}\n{}", s.metrics()))
    };
    counted(1.0);
    let after = s.dig(&["SRV", KUBIA_SET]);
    assert_eq!(after.answers("SRV"), before.answers("SRV"), "{after}");
    assert_eq!(
        s.get("/readyz").unwrap().0,
        200,
        "still ready: the old state serves"
    );

    // 2. A type error: replicas is a string.
    replace_file(&file, &good.replace("replicas: 2", "replicas: three"));
    let log = s.wait_message(rejected, 1);
    assert!(
        log["file"].as_str().unwrap_or("").ends_with("kubia.yaml"),
        "{log}"
    );
    assert_eq!(log["line"], replicas_line, "the line of `replicas:`\n{log}");
    counted(2.0);
    let after = s.dig(&["SRV", KUBIA_SET]);
    assert_eq!(after.answers("SRV"), before.answers("SRV"), "{after}");
    assert_eq!(s.generation(), 1, "no new snapshot for a rejected edit");

    // 3. Fixed: applied.
    replace_file(&file, &good.replace("replicas: 2", "replicas: 1"));
    s.wait_message("snapshot published", 1);
    let d = s.dig(&["SRV", KUBIA_SET]);
    assert_eq!(
        d.answers("SRV"),
        ["0 100 80 kubia-0.kubia.default.svc.cluster.local."],
        "{d}"
    );
}

#[test]
fn manifest_directory_picks_up_added_and_removed_files() {
    let dir = tempfile::tempdir().unwrap();
    copy_into(dir.path(), &[example("kubia.yaml")]);
    // Not a manifest name: ignored.
    std::fs::write(dir.path().join("notes.txt"), "not yaml: [").unwrap();
    let s = Server::new(&[dir.path()]);
    let web0 = "web-0.nginx.default.svc.cluster.local";
    s.dig(&["A", web0]).assert_negative("NXDOMAIN");

    // Add a file (written beside, then renamed in, as a deploy tool would).
    let added = dir.path().join("ports.yaml");
    replace_file(&added, &read(&fixture("ports.yaml")));
    let d = poll(DEADLINE, || {
        let d = s.dig(&["A", web0]);
        (d.status == "NOERROR").then_some(d)
    })
    .unwrap_or_else(|| panic!("the added file was not loaded\n{}", s.log_dump()));
    assert_eq!(d.answers("A").len(), 1, "{d}");
    assert_eq!(
        s.dig(&["A", KUBIA_SET]).answers("A").len(),
        2,
        "kubia still served"
    );

    // Remove it again.
    std::fs::remove_file(&added).unwrap();
    poll(DEADLINE, || {
        (s.dig(&["A", web0]).status == "NXDOMAIN").then_some(())
    })
    .unwrap_or_else(|| panic!("the removed file still answers\n{}", s.log_dump()));
    assert_eq!(s.dig(&["A", KUBIA_SET]).answers("A").len(), 2);
}

#[test]
fn leases_survive_restarts_and_scale_down_and_up() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let file = dir.path().join("kubia.yaml");
    let kubia = read(&example("kubia.yaml"));
    std::fs::write(&file, kubia.replace("replicas: 2", "replicas: 3")).unwrap();
    let pods = ["kubia-0", "kubia-1", "kubia-2"];

    let s = Options::new(&[&file]).state_dir(&state).start();
    let first = addresses(&s, &pods);
    assert_eq!(first, ["192.0.2.1", "192.0.2.2", "192.0.2.3"]);
    let (status, _) = s.terminate();
    assert!(status.success());
    let leases = read(&state.join("leases.json"));
    assert!(leases.contains("192.0.2.3"), "{leases}");

    // Same --state-dir after a restart: same addresses.
    let s = Options::new(&[&file]).state_dir(&state).start();
    assert_eq!(addresses(&s, &pods), first, "{}", s.log_dump());

    // Scale down to 1 and add another set: it must not take kubia-1's or kubia-2's address.
    let other = read(&example("kubia.yaml"))
        .replace("name: kubia", "name: other")
        .replace("app: kubia", "app: other")
        .replace("serviceName: kubia", "serviceName: other");
    let g = s.generation();
    replace_file(
        &file,
        &format!(
            "{}\n---\n{other}",
            kubia.replace("replicas: 2", "replicas: 1")
        ),
    );
    s.wait_message("snapshot published", g as usize);
    s.dig(&["A", "kubia-2.kubia.default.svc.cluster.local"])
        .assert_negative("NXDOMAIN");
    let d = s.dig(&["A", "other.default.svc.cluster.local"]);
    assert_eq!(
        d.answers("A"),
        ["192.0.2.4", "192.0.2.5"],
        "retained leases stay taken\n{d}"
    );

    // Scale back up: kubia-2 regains its old address.
    let g = s.generation();
    replace_file(
        &file,
        &format!(
            "{}\n---\n{other}",
            kubia.replace("replicas: 2", "replicas: 3")
        ),
    );
    s.wait_message("snapshot published", g as usize);
    assert_eq!(addresses(&s, &pods), first, "{}", s.log_dump());
}

#[test]
fn sigterm_shuts_down_gracefully() {
    let s = kubia();
    assert_eq!(s.dig(&["A", KUBIA_SET]).answers("A").len(), 2);
    let (status, logs) = s.terminate();
    let dump = logs.join("\n");
    assert!(status.success(), "exit status {status:?}\n{dump}");
    assert_eq!(status.code(), Some(0), "{dump}");
    let messages: Vec<String> = logs
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["message"].as_str().map(str::to_string))
        .collect();
    let down = messages.iter().position(|m| m == "shutting down");
    let done = messages.iter().position(|m| m == "shutdown complete");
    assert!(down.is_some() && done.is_some() && down < done, "{dump}");
    assert_eq!(
        messages.last().map(String::as_str),
        Some("shutdown complete"),
        "{dump}"
    );
}

/// identity.md: a corrupt lease file is reported and rebuilt, never silently reused.
#[test]
fn corrupt_lease_file_is_moved_aside_and_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("leases.json"), "{ not json").unwrap();
    let s = Options::new(&[&example("kubia.yaml")])
        .state_dir(&state)
        .start();
    let warned = s
        .log_records()
        .into_iter()
        .find(|v| v["level"] == "WARN" && v["message"].as_str().unwrap_or("").contains("corrupt"));
    assert!(
        warned.is_some(),
        "the corrupt file must be reported\n{}",
        s.log_dump()
    );
    let d = s.dig(&["A", KUBIA_SET]);
    assert_eq!(d.answers("A"), ["192.0.2.1", "192.0.2.2"], "{d}");
    let names: Vec<String> = std::fs::read_dir(&state)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    assert!(
        names.iter().any(|n| n.starts_with("leases.json.corrupt")),
        "{names:?}"
    );
    let rebuilt = read(&state.join("leases.json"));
    assert!(rebuilt.contains("192.0.2.2"), "{rebuilt}");
}

/// Regression: the reason of a rejected manifest repeated serde-saphyr's "line N column M",
/// where N counts from the start of the YAML document, so `kubia.yaml:20` was followed by
/// "line 7 column 13" for the same error.
#[test]
fn regression_reject_reason_repeated_a_document_relative_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kubia.yaml");
    std::fs::write(&file, read(&fixture("broken.yaml"))).unwrap();
    let s = Options::new(&[&file]).not_ready().start();
    let log = s.wait_message("manifest rejected; the last good state keeps serving", 0);
    assert_eq!(log["line"], 20, "{log}");
    let reason = log["reason"].as_str().unwrap_or("");
    assert!(!reason.is_empty(), "{log}");
    assert!(
        !reason.contains("line "),
        "no second, document-relative line: {log}"
    );

    let (code, out, _) = check(&[
        "--manifests",
        file.to_str().unwrap(),
        "--state-dir",
        dir.path().join("state").to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{out}");
    let first = out.lines().next().unwrap_or("");
    assert!(
        first.starts_with(&format!("error: {}:20: ", file.display())),
        "{out}"
    );
    assert!(!first.contains("line "), "{out}");
}

#[test]
fn kill_9_during_lease_writes_and_reloads_never_loses_addresses() {
    // State safety: SIGKILL at arbitrary moments while manifests change and leases are being
    // written. Every restart must find a consistent lease file (never a torn or corrupt one)
    // and give every identity the address it had.
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let file = dir.path().join("kubia.yaml");
    let kubia = read(&example("kubia.yaml"));
    std::fs::write(&file, kubia.replace("replicas: 2", "replicas: 3")).unwrap();
    let pods = ["kubia-0", "kubia-1", "kubia-2"];
    let s = Options::new(&[&file]).state_dir(&state).start();
    let first = addresses(&s, &pods);
    let mut s = Some(s);
    for round in 0..12u64 {
        let server = s.take().unwrap();
        // Scale up and down so that leases are added (written) while the process dies.
        let replicas = 3 + (round % 4);
        replace_file(
            &file,
            &kubia.replace("replicas: 2", &format!("replicas: {replicas}")),
        );
        std::thread::sleep(Duration::from_millis(round * 7 % 40));
        let logs = server.kill();
        assert!(!logs.iter().any(|l| l.contains("corrupt")), "{logs:#?}");
        let restarted = Options::new(&[&file]).state_dir(&state).start();
        let now = addresses(&restarted, &pods);
        assert_eq!(now, first, "round {round}: {}", restarted.log_dump());
        assert!(
            !restarted.logs().iter().any(|l| l.contains("corrupt")),
            "round {round}: {}",
            restarted.log_dump()
        );
        let leases: serde_json::Value =
            serde_json::from_str(&read(&state.join("leases.json"))).expect("a whole lease file");
        let addrs: Vec<&str> = leases["leases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["address"].as_str().unwrap())
            .collect();
        let unique: std::collections::BTreeSet<&&str> = addrs.iter().collect();
        assert_eq!(
            unique.len(),
            addrs.len(),
            "round {round}: duplicate leases {addrs:?}"
        );
        s = Some(restarted);
    }
}
