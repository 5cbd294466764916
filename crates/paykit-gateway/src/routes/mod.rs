pub mod health;
pub mod merchant;
