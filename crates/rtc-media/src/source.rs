//! Video sources: anything that yields I420 frames with capture timestamps.

use std::future::Future;
use std::time::Instant;

use crate::frame::I420Frame;
use crate::pacing::FramePacer;
use crate::pattern::TestPattern;

/// Why a source stopped or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The source has no more frames (device unplugged, end of file).
    #[error("the source ended")]
    Ended,
    /// A device error.
    #[error("{0}")]
    Device(String),
}

/// A source of video frames.
pub trait VideoSource: Send {
    /// Width and height of the frames.
    fn resolution(&self) -> (u32, u32);

    /// Frames per second, as a fraction.
    fn frame_rate(&self) -> (u32, u32);

    /// Waits for the next frame.
    fn next_frame(&mut self) -> impl Future<Output = Result<I420Frame, SourceError>> + Send;
}

/// A generated source: a [`TestPattern`] paced at a frame rate.
#[derive(Debug)]
pub struct TestPatternSource {
    pattern: TestPattern,
    width: u32,
    height: u32,
    pacer: FramePacer,
    fps: (u32, u32),
}

impl TestPatternSource {
    /// The seed's default size for generated frames.
    pub const DEFAULT_SIZE: (u32, u32) = (640, 480);

    /// `pattern` at `width × height` and `fps_num / fps_den` frames per second, starting now.
    ///
    /// # Panics
    /// When a side or the rate is zero.
    pub fn new(pattern: TestPattern, width: u32, height: u32, fps_num: u32, fps_den: u32) -> Self {
        assert!(width > 0 && height > 0, "a frame has at least one pixel");
        Self {
            pattern,
            width,
            height,
            pacer: FramePacer::new(Instant::now(), fps_num, fps_den),
            fps: (fps_num, fps_den),
        }
    }

    /// Frames skipped because the consumer was late.
    pub fn dropped(&self) -> u64 {
        self.pacer.dropped()
    }
}

impl VideoSource for TestPatternSource {
    fn resolution(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    fn frame_rate(&self) -> (u32, u32) {
        self.fps
    }

    async fn next_frame(&mut self) -> Result<I420Frame, SourceError> {
        loop {
            if let Some(index) = self.pacer.take(Instant::now()) {
                return Ok(self
                    .pattern
                    .render(self.width, self.height, index)
                    .with_timestamp(self.pacer.offset(index)));
            }
            tokio::time::sleep_until(self.pacer.next_deadline().into()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::pattern::read_counter;

    #[tokio::test]
    async fn paced_frames_with_timestamps() {
        let mut source = TestPatternSource::new(TestPattern::Moving, 320, 240, 50, 1);
        let started = Instant::now();
        let mut last = None;
        for expected in 0..5u64 {
            let frame = source.next_frame().await.unwrap();
            assert_eq!(frame.timestamp, Duration::from_millis(20 * expected));
            assert_eq!(read_counter(&frame), Some(expected));
            last = Some(frame);
        }
        assert!(started.elapsed() >= Duration::from_millis(80), "paced, not as fast as possible");
        assert_eq!(last.unwrap().width(), 320);
    }
}
