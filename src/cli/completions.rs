//! `tickring completions SHELL`: print a shell completion script generated
//! from the clap definitions, so completions never drift from the binary.
//! The packages ship the bash, zsh and fish ones (`packaging/build.sh`
//! runs this command on the binary it packages).

use std::io;

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use super::Cli;

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// bash | zsh | fish | elvish | powershell
    pub shell: Shell,
}

pub fn run(args: &CompletionsArgs) -> anyhow::Result<()> {
    let mut cmd = Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "tickring", &mut io::stdout().lock());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bash_completion_names_every_visible_subcommand() {
        let mut cmd = Cli::command();
        let mut out = Vec::new();
        clap_complete::generate(Shell::Bash, &mut cmd, "tickring", &mut out);
        let text = String::from_utf8(out).unwrap();
        for sub in Cli::command()
            .get_subcommands()
            .filter(|s| !s.is_hide_set())
        {
            assert!(
                text.contains(sub.get_name()),
                "bash completion lacks subcommand {}",
                sub.get_name()
            );
        }
    }
}
