//! CPU time over a measured window: the server's (`/proc/<pid>/stat`), this whole process's
//! (getrusage), the client runtime's threads alone (`/proc/self/task`) and the whole machine's
//! busy time (`/proc/stat`: what neither used is someone else's, on a shared machine). Also used
//! by the MQTT commands, whose client threads have their own name.

use std::path::Path;

use anyhow::{Context, Result, anyhow};

use super::sockets::CLIENT_THREAD;

#[derive(Debug, Clone, Copy, Default)]
pub struct CpuSnapshot {
    pub server: Option<f64>,
    pub process: Option<f64>,
    pub client_threads: Option<f64>,
    /// Busy time of every core of the machine, interrupts included.
    pub machine: Option<f64>,
    /// Of that, the time in hard and soft interrupts (loopback UDP and TCP are received there).
    pub irq: Option<f64>,
}

impl CpuSnapshot {
    pub fn take(server_pid: u32) -> Self {
        Self::of(Some(server_pid), CLIENT_THREAD)
    }

    /// The server's CPU (when its pid is known) and that of this process's threads named
    /// `client_thread`.
    pub fn of(server_pid: Option<u32>, client_thread: &str) -> Self {
        let stat = std::fs::read_to_string("/proc/stat").ok();
        Self {
            server: server_pid.and_then(|pid| stat_cpu_seconds(Path::new(&format!("/proc/{pid}/stat"))).ok()),
            process: own_cpu_seconds(),
            client_threads: client_threads_cpu_seconds(client_thread).ok(),
            machine: stat.as_deref().and_then(parse_machine_busy),
            irq: stat.as_deref().and_then(parse_machine_irq),
        }
    }

    /// `self − start`, per field measured in both.
    pub fn since(&self, start: &CpuSnapshot) -> CpuSnapshot {
        let minus = |end: Option<f64>, start: Option<f64>| end.zip(start).map(|(e, s)| e - s);
        CpuSnapshot {
            server: minus(self.server, start.server),
            process: minus(self.process, start.process),
            client_threads: minus(self.client_threads, start.client_threads),
            machine: minus(self.machine, start.machine),
            irq: minus(self.irq, start.irq),
        }
    }
}

/// Busy seconds of all cores from the `cpu` line of `/proc/stat`: user, nice, system, irq,
/// softirq and steal (not idle nor iowait). The interrupts' time is in it and only partly in the
/// processes' own times (loopback TCP runs in softirqs), so machine − ours is others' time plus
/// interrupts charged to no process.
fn parse_machine_busy(text: &str) -> Option<f64> {
    let fields: Vec<f64> =
        text.lines().next()?.strip_prefix("cpu ")?.split_whitespace().map(|f| f.parse().ok()).collect::<Option<_>>()?;
    let busy = [0, 1, 2, 5, 6, 7].iter().map(|&i| fields.get(i).copied().unwrap_or(0.0)).sum::<f64>();
    Some(busy / clock_ticks())
}

/// Seconds of all cores in hard and soft interrupts, from the `cpu` line of `/proc/stat`.
fn parse_machine_irq(text: &str) -> Option<f64> {
    let fields: Vec<f64> =
        text.lines().next()?.strip_prefix("cpu ")?.split_whitespace().map(|f| f.parse().ok()).collect::<Option<_>>()?;
    Some((fields.get(5)? + fields.get(6)?) / clock_ticks())
}

/// utime + stime of a `/proc/.../stat` file, in seconds.
pub(crate) fn stat_cpu_seconds(path: &Path) -> Result<f64> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse_stat_cpu(&text).ok_or_else(|| anyhow!("unexpected format of {}", path.display()))
}

fn parse_stat_cpu(text: &str) -> Option<f64> {
    // Fields after "pid (comm) ": state is field 3, utime 14, stime 15.
    let after = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// getrusage(RUSAGE_SELF): user + system time of this whole process.
pub(crate) fn own_cpu_seconds() -> Option<f64> {
    // SAFETY: an all-zero rusage is a valid value; getrusage only writes into it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a rusage we own.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    if rc != 0 {
        return None;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Some(secs(usage.ru_utime) + secs(usage.ru_stime))
}

/// Sum over this process's threads named `name`.
fn client_threads_cpu_seconds(name: &str) -> Result<f64> {
    let mut total = 0.0;
    for entry in std::fs::read_dir("/proc/self/task").context("listing /proc/self/task")? {
        let dir = entry.context("reading /proc/self/task")?.path();
        let Ok(comm) = std::fs::read_to_string(dir.join("comm")) else { continue };
        if comm.trim_end() == name {
            // A thread may exit between the listing and the read.
            total += stat_cpu_seconds(&dir.join("stat")).unwrap_or(0.0);
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_stat() {
        let line = "42 (thing line) S 1 2 3 4 5 6 7 8 9 10 300 200 0 0 20 0 1 0 100 0 0";
        let ticks = clock_ticks();
        let cpu = parse_stat_cpu(line).expect("parsed");
        assert!((cpu - 500.0 / ticks).abs() < 1e-9);
    }

    #[test]
    fn parses_machine_busy_time() {
        let text = "cpu  500 1 70 9000 15 2 8 4 0 0\ncpu0 1 2 3 4\n";
        let busy = parse_machine_busy(text).expect("parsed");
        assert!((busy - 585.0 / clock_ticks()).abs() < 1e-9);
        let irq = parse_machine_irq(text).expect("parsed");
        assert!((irq - 10.0 / clock_ticks()).abs() < 1e-9);
        assert!(parse_machine_busy("intr 1 2").is_none());
    }

    #[test]
    fn own_cpu_is_readable() {
        assert!(own_cpu_seconds().is_some());
    }
}
