/**
 * The summary `npro ping` prints at the end, as ping(8) does: sent, received, loss, and the
 * minimum, mean, maximum and standard deviation of the round-trip times.
 *
 * @module
 */

/** What {@linkcode pingSummary} reports. */
export interface PingSummary {
  /** Pings sent. */
  sent: number;
  /** Pongs received. */
  received: number;
  /** Lost pings in percent, 0 to 100. */
  lossPercent: number;
  /** Round-trip times in milliseconds; `undefined` when nothing was received. */
  rtt: { min: number; avg: number; max: number; stddev: number } | undefined;
}

/**
 * Summarizes one run of pings (the population standard deviation, as ping(8) prints it).
 *
 * @param sent How many pings were sent.
 * @param rtts The round-trip times of the replies, in milliseconds.
 * @returns The summary.
 */
export function pingSummary(sent: number, rtts: readonly number[]): PingSummary {
  const received = rtts.length;
  const lossPercent = sent === 0 ? 0 : ((sent - received) / sent) * 100;
  if (received === 0) return { sent, received, lossPercent, rtt: undefined };
  const avg = rtts.reduce((a, b) => a + b, 0) / received;
  const variance = rtts.reduce((a, b) => a + (b - avg) ** 2, 0) / received;
  return {
    sent,
    received,
    lossPercent,
    rtt: { min: Math.min(...rtts), avg, max: Math.max(...rtts), stddev: Math.sqrt(variance) },
  };
}

/**
 * Formats a summary as ping(8) does, in two lines (one when nothing was received).
 *
 * @param target The address pinged.
 * @param summary The summary.
 * @param elapsedMs The time the run took.
 * @returns The lines, without the trailing newline.
 */
export function formatPingSummary(
  target: string,
  summary: PingSummary,
  elapsedMs: number,
): string[] {
  const loss = Number.isInteger(summary.lossPercent)
    ? String(summary.lossPercent)
    : summary.lossPercent.toFixed(1);
  const lines = [
    `--- ${target} ping statistics ---`,
    `${summary.sent} sent, ${summary.received} received, ${loss}% loss, time ${
      Math.round(elapsedMs)
    } ms`,
  ];
  const r = summary.rtt;
  if (r !== undefined) {
    lines.push(
      `rtt min/avg/max/stddev = ${r.min.toFixed(3)}/${r.avg.toFixed(3)}/${r.max.toFixed(3)}/${
        r.stddev.toFixed(3)
      } ms`,
    );
  }
  return lines;
}
