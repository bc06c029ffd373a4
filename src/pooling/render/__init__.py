"""Rendering the book's pages: chapters executed without Quarto, the offline preview, and the Quarto site's steps."""
